"""The bare baseline the benchmark compares the service with: plain Flask, the same pipeline, nothing else.

    BASELINE_MODEL=/path/to/model.pkl gunicorn -w 2 -k sync --chdir bench baseline_app:app

No validation, no request ids, no log, no metrics, no access lines: the cost
of Flask, JSON and ``model.predict`` alone. ``POST /constant`` answers a
fixed body without parsing the request or predicting: the HTTP floor of
gunicorn + Flask on this machine.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
from flask import Flask, jsonify, request

with open(os.environ["BASELINE_MODEL"], "rb") as handle:
    model = pickle.load(handle)  # noqa: S301 - the bundle the harness trained a moment ago

app = Flask(__name__)


@app.post("/predict")
def predict():
    X = np.asarray(request.get_json()["instances"], dtype=float)
    return jsonify(predictions=model.predict(X).tolist())


@app.post("/constant")
def constant():
    request.get_data()  # read the body, as any server must, but do nothing with it
    return jsonify(predictions=[0.0])


@app.get("/ready")
def ready():
    return "ok"
