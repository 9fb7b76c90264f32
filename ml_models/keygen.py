"""Create an Ed25519 key pair for signing model bundles.

    python ml_models/keygen.py --out keys/

writes ``keys/model_signing.pem`` (private, mode 0600: give its path to
learn.py as MODEL_SIGNING_KEY) and ``keys/model_verify.pem`` (public: give its
path to the service as MODEL_VERIFY_KEY). An existing key is never overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml_models.bundle import generate_key_pair

PRIVATE_NAME = "model_signing.pem"
PUBLIC_NAME = "model_verify.pem"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keygen.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("keys"), help="directory for the two PEM files (default: ./keys)"
    )
    args = parser.parse_args(argv)
    private_path, public_path = args.out / PRIVATE_NAME, args.out / PUBLIC_NAME
    if private_path.exists() or public_path.exists():
        print(f"keygen.py: error: {args.out} already holds a key; remove it first", file=sys.stderr)
        return 2
    try:
        generate_key_pair(private_path, public_path)
    except OSError as exc:
        print(f"keygen.py: error: cannot write keys to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"private key  {private_path}  (keep secret; export MODEL_SIGNING_KEY={private_path})")
    print(f"public key   {public_path}  (for the service; export MODEL_VERIFY_KEY={public_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
