"""Records the op library of the oldest model server sst2 exports for: every op and its
attribute names in TensorFlow 2.12.1 with TensorFlow Text 2.12.1 (what the stock
`tensorflow/serving:2.12` image links), for `sst2.serve.graph.serving_audit`.

    python scripts/record_serving_ops.py [--output=sst2/resources/serving_ops.json]

Runs in a virtual environment with exactly that pair (created once, as
`check_serving_runtimes.py` does), so the file is the same on any machine.
"""

import argparse
import importlib.util
import json
import os
import subprocess

TENSORFLOW, TENSORFLOW_TEXT = "2.12.1", "2.12.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DUMPER = r"""
import json
import tensorflow as tf, tensorflow_text
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as c_api
ops = op_def_pb2.OpList()
ops.ParseFromString(c_api.TF_GetBuffer(c_api.TF_GetAllOpList()))
print(json.dumps({"tensorflow": tf.__version__, "tensorflow_text": tensorflow_text.__version__,
                  "ops": {op.name: sorted(a.name for a in op.attr)
                          for op in sorted(ops.op, key=lambda op: op.name)}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(REPO, "sst2", "resources",
                                                         "serving_ops.json"))
    parser.add_argument("--venv_dir", default=os.path.join(
        os.environ.get("SST2_CACHE_DIR", os.path.expanduser("~/.cache/sst2")), "runtimes"))
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location(
        "check_serving_runtimes", os.path.join(REPO, "scripts", "check_serving_runtimes.py"))
    runtimes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtimes)
    python = runtimes.python_of(f"{TENSORFLOW}/{TENSORFLOW_TEXT}", args.venv_dir)
    out = subprocess.run([python, "-c", DUMPER], capture_output=True, text=True, check=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    record = json.loads(out.stdout.strip().splitlines()[-1])
    with open(args.output, "w") as f:
        json.dump(record, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"{len(record['ops'])} ops of TensorFlow {record['tensorflow']} and TensorFlow Text "
          f"{record['tensorflow_text']} -> {args.output}")


if __name__ == "__main__":
    main()
