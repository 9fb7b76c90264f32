"""The deployment files against the schemas and against the code they deploy.

The Kubernetes manifests are validated offline against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict: an unknown field is an error), then cross-checked: probes hit routes
the app has, ports and users match the Dockerfile, every environment name is one the service, its
entry point or gunicorn reads, the images are the ones the Dockerfile builds, and the references
between the objects resolve. The compose file gets the same kind of checks.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from flask_app.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes release the manifests are meant for, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version() + ".0")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(MANIFESTS.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in documents(path)]


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [doc for doc in all_objects() if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_specs() -> dict[str, dict[str, Any]]:
    """Every pod template: '<kind>/<name>' -> pod spec."""
    specs = {}
    for doc in all_objects():
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "Job"):
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = spec["template"]["spec"]
        elif doc["kind"] == "CronJob":
            specs[f"CronJob/{doc['metadata']['name']}"] = spec["jobTemplate"]["spec"]["template"]["spec"]
    return specs


# --- what the code says ----------------------------------------------------------------------

@dataclasses.dataclass
class Stage:
    env: dict[str, str]
    user: str | None
    exposed: list[str]
    labels: dict[str, str]


def dockerfile_stages() -> dict[str, Stage]:
    """The Dockerfile's stages with what each sets (inherited from its FROM stage when it is one)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = rest.split()
            base = stages.get(parts[0])
            current = Stage({}, None, [], {}) if base is None else dataclasses.replace(
                base, env=dict(base.env), labels=dict(base.labels), exposed=list(base.exposed))
            stages[parts[-1]] = current
        elif instruction in ("ENV", "LABEL") and current is not None:
            target = current.env if instruction == "ENV" else current.labels
            target.update(token.split("=", 1) for token in shlex.split(rest))
        elif instruction == "USER" and current is not None:
            current.user = rest.strip()
        elif instruction == "EXPOSE" and current is not None:
            current.exposed += rest.split()
    return stages


def entrypoint_commands() -> set[str]:
    text = (ROOT / "docker" / "entrypoint.sh").read_text()
    return set(re.findall(r"^  ([a-z-]+)\)$", text, flags=re.M))


def names_read_by_the_service() -> set[str]:
    """Environment names the service, its entry point, gunicorn.conf.py and learn.py read."""
    names = {field.name for field in dataclasses.fields(Settings)} | {"CONFIG_FILE"}
    names |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", (ROOT / "docker" / "entrypoint.sh").read_text()))
    names |= set(re.findall(r'os\.environ\.get\("([A-Z][A-Z0-9_]+)"', (ROOT / "gunicorn.conf.py").read_text()))
    names |= set(re.findall(r'environ\.get\("([A-Z][A-Z0-9_]+)"', (ROOT / "ml_models" / "learn.py").read_text()))
    names |= set(dockerfile_stages()["runtime"].env)
    return names


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> list[str]:
    """The app's URL rules, from an app on an empty store and an SQLite log."""
    from flask_app import create_app

    root = tmp_path_factory.mktemp("routes")
    app = create_app({"DATABASE_URL": f"sqlite:///{root / 'log.db'}", "MODEL_DIR": str(root / "models"),
                      "LOG_JOURNAL_DIR": str(root / "journal"), "LOG_SHIP_INTERVAL": 0})
    rules = sorted(rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static")
    app.extensions["prediction_log"].stop()
    with app.app_context():
        from flask_app.extensions import db

        db.engine.dispose()
    return rules


# --- the schemas -----------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path, version):
    for doc in documents(MANIFESTS / path):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path}: {doc['kind']} {doc['metadata']['name']}: {error.message} at "
                        f"{'/'.join(str(part) for part in error.absolute_path)}")


def test_kustomization_lists_the_long_lived_resources():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    run_once = {"job-migrate.yaml", "job-train.yaml", "secret.example.yaml"}
    on_disk = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - run_once
    assert {doc["metadata"]["namespace"] for doc in all_objects() if doc["kind"] != "Namespace"} == \
        {kustomization["namespace"]} == {find("Namespace")["metadata"]["name"]}
    images = {image["name"] for image in kustomization["images"]}
    assert images == {image.rsplit(":", 1)[0] for image in container_images().values()
                      if not image.rsplit(":", 1)[0].endswith("-train")}


# --- the pods against the image and the app ---------------------------------------------------

def containers() -> dict[str, dict[str, Any]]:
    return {f"{where}/{container['name']}": container
            for where, spec in pod_specs().items() for container in spec["containers"]}


def container_images() -> dict[str, str]:
    return {where: container["image"] for where, container in containers().items()}


def test_images_are_the_ones_the_dockerfile_and_compose_build():
    stages = dockerfile_stages()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose_image = {service: re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", spec["image"])
                     for service, spec in compose["services"].items() if "image" in spec}
    expected = {
        "runtime": (stages["runtime"].labels["org.opencontainers.image.title"], compose_image["app"]),
        "train": (stages["train"].labels["org.opencontainers.image.title"], compose_image["train"]),
    }
    for title, image in expected.values():
        assert image.split(":")[0] == title  # compose tags what the Dockerfile labels
    tags = set()
    for where, image in container_images().items():
        repository, tag = image.rsplit(":", 1)
        tags.add(tag)
        stage = "train" if where.startswith("Job/sklearn-prediction-train") else "runtime"
        assert repository.rsplit("/", 1)[-1] == expected[stage][0], where
    assert len(tags) == 1, "every object runs the same release"


def test_commands_are_the_entry_points():
    commands = entrypoint_commands()
    assert {"serve", "migrate", "log-partitions", "train"} <= commands
    wanted = {"Deployment": "serve", "Job/sklearn-prediction-migrate": "migrate",
              "Job/sklearn-prediction-train": "train", "CronJob": "log-partitions"}
    for where, container in containers().items():
        (command,) = [value for key, value in wanted.items() if where.startswith(key)]
        assert container["args"] == [command], where
        assert "command" not in container, f"{where} must keep the image's entry point"


def test_pods_run_as_the_image_user_on_a_read_only_root_filesystem():
    uid, gid = dockerfile_stages()["runtime"].user.split(":")
    for where, spec in pod_specs().items():
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert (str(context["runAsUser"]), str(context["runAsGroup"])) == (uid, gid), where
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "memory" in container["resources"]["limits"], where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where


def settings_of(container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets: the image's ENV, its envFrom sources, its env."""
    environ = dict(dockerfile_stages()["runtime"].env)
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environ.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            environ.update(find("Secret", source["secretRef"]["name"])["stringData"])
    environ.update({item["name"]: item["value"] for item in container.get("env", [])})
    return environ


def test_every_directory_the_service_writes_is_a_volume():
    for where, spec in pod_specs().items():
        for container in spec["containers"]:
            environ = settings_of(container)
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            volumes = {volume["name"] for volume in spec["volumes"]}
            assert {mount["name"] for mount in container["volumeMounts"]} <= volumes, where
            if where.startswith("Job/sklearn-prediction-train"):  # learn.py alone
                written = {"/tmp", environ["MODEL_DIR"]}
            else:  # the app (the journal, the metrics files); the Deployment also activates models
                written = {"/tmp", environ["LOG_JOURNAL_DIR"], environ["PROMETHEUS_MULTIPROC_DIR"]}
                if where.startswith("Deployment"):
                    written.add(environ["MODEL_DIR"])
            assert written <= mounts, f"{where}: {sorted(written - mounts)} not writable"


def test_probes_and_ports_match_the_app(routes):
    deployment = find("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    environ = settings_of(container)
    (port,) = container["ports"]
    exposed = dockerfile_stages()["runtime"].exposed
    assert exposed == [f"{port['containerPort']}"] or exposed == [f"{port['containerPort']}/tcp"]
    assert environ["GUNICORN_BIND"].rsplit(":", 1)[1] == str(port["containerPort"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert {"/ready", "/health"} <= set(routes)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] in routes
    # preStop, then gunicorn's graceful timeout, then the last flush: inside the grace period.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + int(environ["GUNICORN_GRACEFUL_TIMEOUT"]) + 10


def test_every_environment_name_is_one_the_service_reads():
    known = names_read_by_the_service()
    for where, container in containers().items():
        unknown = set(settings_of(container)) - known
        assert not unknown, f"{where}: {sorted(unknown)}"


def test_the_settings_load_and_say_what_a_cluster_needs():
    (container,) = find("Deployment")["spec"]["template"]["spec"]["containers"]
    environ = settings_of(container)
    settings = load_settings(environ={key: value for key, value in environ.items()})
    assert settings.DATABASE_URL.startswith("postgresql://")
    assert settings.TRUSTED_PROXY_HOPS == 1
    assert environ["MIGRATE_ON_START"] == "false" and environ["LOG_FORMAT"] == "json"
    # The same settings as the compose app, so that the two deployments behave alike.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose_names = set(compose["services"]["app"]["environment"]) - {"GUNICORN_ACCESS_LOG"}
    assert compose_names <= set(environ)


def size_in_bytes(nginx_size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", nginx_size).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def test_ingress_bounds_bodies_like_the_app_and_routes_every_api_path_but_metrics(routes):
    ingress = find("Ingress")
    annotations = ingress["metadata"]["annotations"]
    environ = find("ConfigMap")["data"]
    assert size_in_bytes(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) == \
        int(environ["MAX_CONTENT_LENGTH"])
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > int(environ["GUNICORN_TIMEOUT"])
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    service = find("Service")
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    for path in paths:
        assert path["backend"]["service"] == {"name": service["metadata"]["name"],
                                              "port": {"name": service["spec"]["ports"][0]["name"]}}

    def routed(route: str) -> bool:
        return any(route == path["path"] if path["pathType"] == "Exact"
                   else route == path["path"] or route.startswith(path["path"] + "/") for path in paths)

    assert not routed("/metrics")
    assert [route for route in routes if route != "/metrics" and not routed(route)] == []


def test_references_between_the_objects_resolve():
    deployment = find("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = find("Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert find("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    target = find("HorizontalPodAutoscaler")["spec"]
    assert target["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert target["minReplicas"] == deployment["spec"]["replicas"] == 3
    claim = find("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for where, spec in pod_specs().items():
        for volume in spec["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"], where


# --- compose ---------------------------------------------------------------------------------

def compose_default(value: str) -> str:
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def test_compose_publishes_only_nginx_and_gives_it_the_apps_body_limit():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = sorted(name for name, spec in services.items() if spec.get("ports"))
    assert published == ["nginx"]
    app, nginx = services["app"]["environment"], services["nginx"]["environment"]
    assert compose_default(nginx["MAX_CONTENT_LENGTH"]) == compose_default(app["MAX_CONTENT_LENGTH"]) == \
        str(Settings().MAX_CONTENT_LENGTH)
    assert nginx["APP_UPSTREAM"] == "app:8000" and app["GUNICORN_BIND"].endswith(":8000")
    assert compose_default(app["TRUSTED_PROXY_HOPS"]) == "1"
    template = (ROOT / "docker" / "nginx" / "templates" / "default.conf.template").read_text()
    assert "client_max_body_size ${MAX_CONTENT_LENGTH};" in template
    assert set(re.findall(r"\$\{([A-Z_]+)\}", template)) == set(nginx)
    # One journal volume shared by the replicas, at the directory the image logs to.
    journal = dockerfile_stages()["runtime"].env["LOG_JOURNAL_DIR"]
    assert f"journal:{journal}" in services["app"]["volumes"]


def test_the_service_never_imports_matplotlib():
    """The service image has no matplotlib: only training (learn.py's plot) needs it."""
    code = (
        "import importlib, pkgutil, sys\n"
        "sys.modules['matplotlib'] = None\n"  # any import of it fails
        "import flask_app\n"
        "for module in pkgutil.walk_packages(flask_app.__path__, 'flask_app.'):\n"
        "    if '.migrations' not in module.name and module.name != 'flask_app.wsgi':\n"
        "        importlib.import_module(module.name)\n"
        "import ml_models.bundle, ml_models.estimators\n"  # what unpickling a bundle needs

    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    requirements = (ROOT / "requirements.txt").read_text().lower()
    assert "matplotlib" not in requirements
    assert "matplotlib" in (ROOT / "requirements-train.txt").read_text().lower()
