"""Static SASS facts of every CUDA kernel in the built extension, per arch (no GPU needed).

Runs cuobjdump -sass on fusedrnn._C (the library the tests import) and, per kernel and arch,
counts: local memory instructions (LDL/STL: spills or stack arrays; must be 0), tensor-core
instructions (HMMA), cluster barrier instructions (UCGABAR_ARV / UCGABAR_WAIT, sm_90), global
loads by width (LDG 32/64/128 bits, 16-bit and 8-bit), shared-memory
loads by width (LDS), and the total instruction count.

    python benchmarks/sass.py [--so PATH] [--json OUT.json] [--markdown]

cuobjdump and the nvdisasm it runs come from the PyPI packages nvidia-cuda-cuobjdump and
nvidia-cuda-nvdisasm (installed by scripts/setup.sh), or from the CUDA toolkit ($CUDA_HOME/bin,
PATH). Exit status: 0 when no kernel uses local memory,
1 when one does, 2 when cuobjdump or the CUDA kernels are missing.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig


def find_tool(name):
    """A CUDA binary utility: the PyPI packages' (nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm),
    the toolkit's, PATH's, or the copy Triton carries; None if absent."""
    cands = []
    for base in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        cands += sorted(glob.glob(os.path.join(base, "nvidia", "*", "bin", name)))
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            cands.append(os.path.join(os.environ[env], "bin", name))
    cands += [shutil.which(name) or "", f"/usr/local/cuda/bin/{name}"]
    for base in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        cands.append(os.path.join(base, "triton", "backends", "nvidia", "bin", name))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def find_cuobjdump():
    """cuobjdump, which runs only with nvdisasm beside it or on NVDISASM_PATH / PATH."""
    tool = find_tool("cuobjdump")
    return tool if tool and find_tool("nvdisasm") else None


def extension_path():
    import fusedrnn._C as c

    return c.__file__


def demangle(names):
    """Mangled -> readable names through c++filt when present (else unchanged)."""
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    r = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True)
    out = r.stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def short_name(readable):
    """'void fusedrnn::kern::lstm_forward_step_kernel<fusedrnn::kern::LstmForwardCfg<float> >(...)'
    -> 'lstm_forward_step_kernel<LstmForwardCfg<float>>'."""
    s = readable.split("(")[0]
    s = re.sub(r"^void ", "", s)
    s = re.sub(r"\bfusedrnn::(kern::|cuda::|cells::)?", "", s)
    s = s.replace("c10::", "").replace(" >", ">").replace("(Act)", "")
    return s


LDG = re.compile(r"\bLDG(\.[A-Z0-9_]+)*")
LDS = re.compile(r"\bLDS(\.[A-Z0-9_]+)*")


def width(op):
    mods = op.split(".")[1:]
    for m, w in (("128", 128), ("64", 64), ("U16", 16), ("S16", 16), ("U8", 8), ("S8", 8)):
        if m in mods:
            return w
    return 32


def parse(sass_text):
    """{(arch, mangled name): counts} from cuobjdump -sass output."""
    out, arch, cur = {}, None, None
    for line in sass_text.splitlines():
        m = re.search(r"code for (sm_\d+a?)", line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            cur = out.setdefault((arch, m.group(1)), {
                "instructions": 0, "LDL": 0, "STL": 0, "HMMA": 0, "UCGABAR_ARV": 0,
                "UCGABAR_WAIT": 0, "LDG": {}, "LDS": {}, "LDGSTS": {}, "LDG_GPU": {},
                "STG_GPU": 0, "TIMER": 0})
            continue
        if cur is None or not re.match(r"\s*/\*[0-9a-f]{4,}\*/", line):
            continue
        ins = line.split("*/", 1)[1].split(";")[0].strip()
        if not ins:
            continue
        cur["instructions"] += 1
        if "SR_GLOBALTIMER" in ins:  # a spin wait's watchdog (csrc/cuda/watchdog.h)
            cur["TIMER"] += 1
        opcode = ins.lstrip("@!PT0123456789 ").split(" ")[0] if ins.startswith("@") else \
            ins.split(" ")[0]
        base = opcode.split(".")[0]
        if base in ("LDL", "STL", "HMMA", "UCGABAR_ARV", "UCGABAR_WAIT"):
            cur[base] += 1
        elif base == "LDG":
            w = str(width(opcode))
            cur["LDG"][w] = cur["LDG"].get(w, 0) + 1
            if ".STRONG.GPU" in opcode:  # ld.relaxed/acquire.gpu: the flag words' polls
                cur["LDG_GPU"][w] = cur["LDG_GPU"].get(w, 0) + 1
        elif base == "STG" and ".STRONG.GPU" in opcode:  # st.relaxed/release.gpu
            cur["STG_GPU"] += 1
        elif base in ("LDS", "LDGSTS"):  # LDGSTS: cp.async, global -> shared
            w = str(width(opcode))
            cur[base][w] = cur[base].get(w, 0) + 1
    return out


def report(so=None):
    """Rows (dicts) per kernel and arch; raises RuntimeError naming what is missing."""
    tool = find_cuobjdump()
    if tool is None:
        raise RuntimeError("cuobjdump or nvdisasm not found: pip install nvidia-cuda-cuobjdump "
                           "nvidia-cuda-nvdisasm (scripts/setup.sh does) or put the CUDA "
                           "toolkit's bin on PATH")
    so = so or extension_path()
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(find_tool("nvdisasm")) + os.pathsep + env.get("PATH", "")
    r = subprocess.run([tool, "-sass", so], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"cuobjdump -sass {so} failed: {r.stderr.strip()[:500]}")
    parsed = parse(r.stdout)
    names = demangle(sorted({n for _, n in parsed}))
    rows = []
    for (arch, mangled), c in sorted(parsed.items(), key=lambda kv: (kv[0][0] or "", names[kv[0][1]])):
        rows.append(dict(arch=arch, kernel=short_name(names[mangled]), mangled=mangled, **c))
    return rows


def fmt_widths(d):
    return " ".join(f"{w}b:{n}" for w, n in sorted(d.items(), key=lambda kv: -int(kv[0]))) or "-"


def markdown(rows):
    lines = ["| arch | kernel | instr | LDL/STL | HMMA | LDG by width | LDGSTS by width "
             "| LDS by width |",
             "|---|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | `{r['kernel']}` | {r['instructions']} | "
                     f"{r['LDL'] + r['STL']} | {r['HMMA']} | {fmt_widths(r['LDG'])} | "
                     f"{fmt_widths(r['LDGSTS'])} | {fmt_widths(r['LDS'])} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--so", help="the extension library (default: fusedrnn._C)")
    ap.add_argument("--json", help="write the rows as JSON here")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    a = ap.parse_args()
    try:
        rows = report(a.so)
    except (RuntimeError, ImportError) as e:
        print(f"sass: {e}", file=sys.stderr)
        return 2
    if not rows:
        print("sass: the extension holds no CUDA kernels (built CPU-only?)", file=sys.stderr)
        return 2
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    if a.markdown:
        print(markdown(rows))
    else:
        for r in rows:
            print(f"{r['arch']:7} {r['kernel'][:70]:70} instr {r['instructions']:6} "
                  f"local {r['LDL'] + r['STL']:3} HMMA {r['HMMA']:4} "
                  f"LDG {fmt_widths(r['LDG'])}")
    bad = [r for r in rows if r["LDL"] or r["STL"]]
    for r in bad:
        print(f"sass: local memory in {r['kernel']} ({r['arch']}): LDL {r['LDL']} STL {r['STL']}",
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
