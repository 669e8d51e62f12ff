"""Loads an export on the TensorFlow runtimes that model servers run, and asks it questions.

For each pinned pair of TensorFlow and TensorFlow Text (the one TF Serving's
stock images link is 2.12.1/2.12.1), a virtual environment is created once
under `--venv_dir` and kept. In a fresh process per runtime the export is
loaded and sent a fixed request set through `serving_default` and `explain`
(one sentence, a batch of 300, an empty batch, empty and whitespace strings,
invalid UTF-8, emoji and CJK, a 5,000-character text read in windows, and pairs
for a pair model). One row per
runtime: does it load, does every request answer, the label agreement with
the installed runtime, and the largest |difference| of a probability (or of a
word's attribution).

    python scripts/check_serving_runtimes.py EXPORT_DIR [EXPORT_DIR ...]
    python scripts/check_serving_runtimes.py EXPORT_DIR --runtimes=2.12.1/2.12.1

Exit status 1 if any runtime fails to load or answer, or disagrees.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

# (tensorflow, tensorflow-text): the oldest a stock TF Serving image runs, two later ones.
RUNTIMES = ("2.12.1/2.12.1", "2.15.1/2.15.0", "2.19.0/2.19.0")
INSTALLED = "installed"
MAX_PROBABILITY_DIFFERENCE = 5e-3

# Runs inside each runtime: loads the export, answers every request, prints JSON.
ASKER = r"""
import json, sys
import numpy as np
import tensorflow as tf, tensorflow_text  # noqa: F401
export, requests = sys.argv[1], json.load(open(sys.argv[2]))
signatures = tf.saved_model.load(export).signatures
pair = "text_pair" in signatures["serving_default"].structured_input_signature[1]
answers = {}
asked = [(f"{signature}/{name}" if signature != "serving_default" else name,
          signatures[signature], texts) for signature in ("serving_default", "explain")
         if signature in signatures for name, texts in requests.items()]
for name, serve, texts in asked:
    if isinstance(texts, str):  # bytes, hex-encoded (invalid UTF-8)
        texts = [bytes.fromhex(t) for t in texts.split(",")]
    batch = tf.constant(texts, dtype=tf.string, shape=[len(texts)])
    inputs = {"text": batch, "text_pair": tf.reverse(batch, [0])} if pair else {"text": batch}
    try:
        out = serve(**inputs)
    except Exception as e:  # noqa: BLE001 - reported as the row's failure
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        node = next((i for i, line in enumerate(lines) if line.startswith("[[")), 1)
        answers[name] = {"error": f"{type(e).__name__}: {lines[max(node - 1, 0)][:300]}"}
        continue
    answers[name] = {key: (np.char.decode(value.numpy().astype(bytes), "utf-8").tolist()
                           if value.dtype == tf.string else value.numpy().tolist())
                     for key, value in out.items()}
print("ANSWERS " + json.dumps({"tensorflow": tf.__version__, "answers": answers}))
"""


def request_set() -> dict:
    """The fixed requests, by name: lists of strings, or hex bytes joined by commas."""
    words = "a gripping , funny film that never lets go of its audience".split()
    batch = [" ".join(words[i % 7:i % 7 + 1 + i % 5]) for i in range(300)]
    return {
        "one sentence": ["a gripping, funny film"],
        "a batch of 300": batch,
        "an empty batch": [],
        "empty and whitespace": ["", " ", "\t\n  "],
        "invalid UTF-8": b"\xff\xfe broken".hex() + "," + b"caf\xe9 au lait".hex(),
        "emoji and CJK": ["\U0001F600\U0001F44D great",
                          "\u3053\u306e\u6620\u753b\u306f\u7d20\u6674\u3089\u3057\u3044",
                          "\u5f88\u65e0\u804a\u7684\u7535\u5f71"],
        "5,000 characters": [("an honest, patient and moving story; " * 140)[:5000]],
    }


def python_of(runtime: str, venv_dir: str) -> str:
    """The Python of a virtual environment with that pair installed (created once)."""
    if runtime == INSTALLED:
        return sys.executable
    tensorflow, text = runtime.split("/")
    venv = os.path.join(venv_dir, f"tf-{tensorflow}-text-{text}")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(os.path.join(venv, ".complete")):
        print(f"creating {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", f"tensorflow=={tensorflow}",
                        f"tensorflow-text=={text}"], check=True)
        open(os.path.join(venv, ".complete"), "w").close()
    return python


def ask(python: str, export: str, requests_file: str) -> dict:
    """The runtime's answers to every request, or {"error": ...} if it does not load."""
    out = subprocess.run([python, "-c", ASKER, export, requests_file], capture_output=True,
                         text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    for line in out.stdout.splitlines():
        if line.startswith("ANSWERS "):
            return json.loads(line[len("ANSWERS "):])
    return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def compare(answers: dict, reference: dict) -> dict:
    """Failed requests, label agreement and max |Δp| (or |Δscore|) against the reference."""
    failed = [name for name, a in answers.items() if "error" in a]
    agree = total = 0
    worst = 0.0
    for name, a in answers.items():
        r = reference.get(name, {})
        if "error" in a or "error" in r:
            continue
        for key in ("label", "labels", "predicted"):
            if key in a:
                total += len(a[key])
                agree += sum(x == y for x, y in zip(a[key], r[key]))
                break
        for key in ("probabilities", "score", "word_attributions"):
            if key in a and a[key]:
                worst = max(worst, float(np.max(np.abs(np.subtract(a[key], r[key])), initial=0.0)))
    return {"failed": failed, "agreement": agree / total if total else 1.0, "max_delta": worst}


def check(export: str, runtimes: list[str], venv_dir: str) -> bool:
    """Prints one row per runtime for `export`; True when every row answers and agrees."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(request_set(), f)
    results = {rt: ask(python_of(rt, venv_dir), export, f.name) for rt in [INSTALLED, *runtimes]}
    os.unlink(f.name)
    reference = results[INSTALLED].get("answers", {})
    print(f"\n{export}")
    print("| runtime (TF / TF Text) | loads | answers | label agreement | max abs dp |")
    print("|---|---|---|---|---|")
    ok = True
    for runtime, result in results.items():
        name = f"{result.get('tensorflow', '?')} (installed)" if runtime == INSTALLED else runtime
        if "error" in result:
            print(f"| {name} | no: {result['error']} | - | - | - |")
            ok = False
            continue
        row = compare(result["answers"], reference)
        answered = "all" if not row["failed"] else "failed: " + "; ".join(
            f"{n}: {result['answers'][n]['error']}" for n in row["failed"])
        print(f"| {name} | yes | {answered} | {row['agreement']:.1%} | {row['max_delta']:.1e} |")
        ok &= (not row["failed"] and row["agreement"] == 1.0
               and row["max_delta"] <= MAX_PROBABILITY_DIFFERENCE)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help="comma-separated TF/TF-Text pairs, e.g. 2.12.1/2.12.1")
    parser.add_argument("--venv_dir", default=os.path.join(
        os.environ.get("SST2_CACHE_DIR", os.path.expanduser("~/.cache/sst2")), "runtimes"))
    args = parser.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    ok = all([check(os.path.abspath(e), runtimes, args.venv_dir) for e in args.exports])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
