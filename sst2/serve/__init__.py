"""Serving a trained run, in rooms: `graph/` (the SavedModel's computation on raw
strings), `openvino/` (the OpenVINO artifact), `client/` (what `sst2.predict` and
`sst2.score` answer with), `behaviour/` (what it answers when a text changes: typos,
names, identity terms, negation); here, what they share (`versions`: export folders and
their facts) and the run's review: restored (`trained`), evaluated, calibrated
(`temperature`, `calibrated`), reported, carded and published."""

import sys

# OpenVINO's conversion tools and NNCF send usage telemetry and write a client id under
# ~/intel on each use; sst2 writes nothing outside the run, its outputs and its cache.
# Without their telemetry package both use the stubs they ship (issue 47, case 19).
sys.modules.setdefault("openvino_telemetry", None)
