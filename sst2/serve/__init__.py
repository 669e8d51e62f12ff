"""A trained run restored, and the SavedModel on raw strings."""

import sys

# OpenVINO's conversion tools and NNCF send usage telemetry and write a client id under
# ~/intel on each use; sst2 writes nothing outside the run, its outputs and its cache.
# Without their telemetry package both use the stubs they ship (issue 47, case 19).
sys.modules.setdefault("openvino_telemetry", None)
