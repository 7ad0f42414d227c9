#!/usr/bin/env python3
"""Coverage of the emulated CUDA suite: every __global__ kernel in the source tree was launched.

Each test process of the emulated build appends "file:kernel count" lines to the launch log at
exit (DROPNET_EMU_LAUNCH_LOG). A kernel defined in a .cu file must have been launched from that
file (two files define a scale_kernel); one defined in a .cuh from any file.
Usage: emu_coverage.py SOURCE_DIR LAUNCH_LOG
"""
import pathlib
import re
import sys

KERNEL = re.compile(r"__global__\s+(?:static\s+)?(?:void\s+)?(?:__launch_bounds__\([^)]*\)\s*)?(?:void\s+)?"
                    r"([A-Za-z_]\w*)\s*\(")


def main():
    src, log = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    if not log.exists() or log.stat().st_size == 0:
        sys.exit(f"emu_coverage: no launches recorded in {log}: run the whole emulated suite (ctest -L cuda), "
                 "not this test alone")
    launched = {}
    for line in log.read_text().splitlines():
        name, _, count = line.rpartition(" ")
        launched[name] = launched.get(name, 0) + int(count)
    kernels = []
    for d in ("core", "kernels", "dist"):
        for f in sorted((src / d).glob("*.cu*")):
            text = re.sub(r"//[^\n]*", "", f.read_text())
            kernels += [(f, m.group(1)) for m in KERNEL.finditer(text)]
    missing = []
    for f, name in kernels:
        if f.suffix == ".cuh":
            n = sum(c for k, c in launched.items() if k.endswith(":" + name))
        else:
            n = launched.get(f"{f.name}:{name}", 0)
        if n == 0:
            missing.append(f"{name} ({f.relative_to(src)})")
        else:
            print(f"  {n:8d} launches  {name} ({f.relative_to(src)})")
    print(f"emu_coverage: {len(kernels)} kernels in the source tree, {len(kernels) - len(missing)} launched by the "
          "emulated suite")
    for m in missing:
        print(f"emu_coverage: never launched: {m}")
    sys.exit(1 if missing or not kernels else 0)


if __name__ == "__main__":
    main()
