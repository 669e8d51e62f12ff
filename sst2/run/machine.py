"""The CPU a run computes on, as `/proc/cpuinfo` names it: what every measurement names.

CPUs differ in what their matmuls can do (AMX, AVX512-BF16, VNNI, AVX2 only),
so timings are named with the CPU's name, family, model and matmul extensions.

Example:
    >>> sorted(cpu_info())
    ['cores', 'family', 'flags', 'model', 'name']
    >>> "cores" in cpu_name()
    True
"""

import os
import platform

# The instruction-set extensions that decide a CPU's matmul speed, as cpuinfo spells them.
MATMUL_EXTENSIONS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_info() -> dict:
    """`name`, `family`, `model`, every `flag` (a string, as cpuinfo lists them) and
    `cores` of this machine's first CPU; the platform's processor name where there is no
    `/proc/cpuinfo`."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]
        fields = {k.strip(): v.strip() for k, _, v in
                  (line.partition(":") for line in first.splitlines()) if v}
    except OSError:
        pass
    return {"name": fields.get("model name", platform.processor() or platform.machine()),
            "family": fields.get("cpu family"), "model": fields.get("model"),
            "flags": fields.get("flags", ""), "cores": os.cpu_count()}


def cpu_name() -> str:
    """The CPU for a measurement's caption: name, family, model, matmul extensions, cores."""
    info = cpu_info()
    extensions = " ".join(f for f in MATMUL_EXTENSIONS if f in info["flags"].split())
    return (f"{info['name']} (family {info['family']}, model {info['model']}; "
            f"{extensions or 'no AVX2'}), {info['cores']} cores")
