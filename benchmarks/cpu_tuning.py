"""CPU tuning study of the hqmd_plus_full training step (issue 8, item 2): what each setting does to its speed.

    python benchmarks/cpu_tuning.py                          # every variant (about 30 minutes on 2 idle cores)
    python benchmarks/cpu_tuning.py --only default,xla --steps 2
    python benchmarks/cpu_tuning.py --size 145x193 --batch 4 --out /tmp/tuning.json     # a quicker, smaller study

Each variant is one `cpu_step.py` subprocess (same model, loss, optimizer and data as `make bench`): the package's
default configuration (fused batch norm and Adam included), thread pools, oneDNN off, XLA on the whole step, batch
size, mixed_bfloat16, the plain MSE step, the fused kernels switched back to Keras' code (benchmarks/variants.py:
keras_bn, keras_adam, both: what each is worth), and the step split by part (forward + backward of the encoder
alone, of encoder + ASPP, of the whole network without loss/optimizer, forward only).
Then `cpu_profile.py` splits the default step and the `--profile-variant` step by stage, model part and op type,
and `train_ab.py` runs the two interleaved in one process (same load for both).
Writes benchmarks/tuning.json (rendered into RESULTS.md by `make bench` / `python benchmarks/report.py`).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, now, run_worker  # noqa: E402

# name, description, cpu_step.py arguments, environment
VARIANTS = [
    ("default", "package defaults: fused batch norm (FusedBatchNormV3) and Adam (ResourceApplyAdam), TF thread "
     "pools (0 = one per core), oneDNN on, no XLA, optimizer slots built before the first step", [], {}),
    ("no_prebuild", "Keras' default: the optimizer's slots created inside the first step (traces the step twice)",
     ["--no-prebuild"], {}),
    ("intra2_inter1", "intra-op threads 2, inter-op threads 1", ["--intra", 2, "--inter", 1], {}),
    ("intra2_inter2", "intra-op 2, inter-op 2 (what TF picks here)", ["--intra", 2, "--inter", 2], {}),
    ("onednn_off", "TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels)", ["--steps", 2], {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    ("xla", "XLA: compile(jit_compile=True) on the whole step", ["--jit", "--steps", 2], {}),
    ("no_metrics", "recipe loss, no compiled metrics", ["--metrics", "none"], {}),
    ("mse", "plain MSE loss, no metrics (same model and Adam)", ["--loss", "mse", "--metrics", "none"], {}),
    ("batch4", "batch 4", ["--batch", 4], {}),
    ("batch16", "batch 16", ["--batch", 16], {}),
    ("bf16", "mixed_bfloat16 (ratio against the float32 matmul)", ["--precision", "mixed_bfloat16"], {}),
    ("keras_bn", "variant: batch norm by Keras' code, not FusedBatchNormV3", ["--variant", "keras_bn"], {}),
    ("keras_adam", "variant: Adam by Keras' code (optimizer.fused=false), not ResourceApplyAdam",
     ["--variant", "keras_adam"], {}),
    ("keras_bn_adam", "both variants: the package before its fused kernels", ["--variant", "keras_bn,keras_adam"], {}),
    ("keras_bn_adam_bf16", "both variants, mixed_bfloat16", ["--variant", "keras_bn,keras_adam", "--precision",
                                                             "mixed_bfloat16"], {}),
    ("part_forward", "part: forward pass only (training=True), no backward", ["--mode", "forward"], {}),
    ("part_encoder", "part: forward + backward of the encoder alone (up to post_relu), loss mean(y^2)",
     ["--mode", "grad", "--upto", "post_relu"], {}),
    ("part_encoder_aspp", "part: encoder + ASPP, forward + backward", ["--mode", "grad", "--upto", "aspp"], {}),
    ("part_network", "part: whole network forward + backward, no loss terms/metrics/optimizer",
     ["--mode", "grad"], {}),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--size", default="289x385")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-ab", action="store_true", help="skip the interleaved A/B run (train_ab.py)")
    parser.add_argument("--ab-size", default="289x385", help="input size of the A/B run (batch 8)")
    parser.add_argument("--profile-variant", default="keras_bn,keras_adam",
                        help="benchmarks/variants.py names of the second profile and of the A/B run's B")
    parser.add_argument("--out", default=str(HERE / "tuning.json"))
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    chosen = VARIANTS
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
        chosen = [v for v in VARIANTS if v[0] in names]
    started = now()
    load_start = os.getloadavg()[0]
    matmul = run_worker("cpu_step.py", ["matmul", "--dtype", "float32", "--steps", 6])
    rate, cpu_rate = matmul.get("gflops_best"), matmul.get("gflops_per_cpu_s")
    print(f"matmul float32: {rate:.1f} GFLOP/s, {cpu_rate:.1f} GFLOP per CPU-second", flush=True)
    rows = []
    for name, description, extra, env in chosen:
        options = {"--size": args.size, "--batch": args.batch, "--steps": args.steps, "--warmup": 1}
        flags = []
        for i, item in enumerate(extra):  # "--key value" pairs override the defaults; lone flags pass through
            if isinstance(item, str) and item.startswith("--"):
                value = extra[i + 1] if i + 1 < len(extra) and not str(extra[i + 1]).startswith("--") else None
                if value is None:
                    flags.append(item)
                else:
                    options[item] = value
        mode = options.pop("--mode", "train")
        pairs = [str(v) for key, value in options.items() for v in (key, value)]
        row = run_worker("cpu_step.py", [mode, *pairs, *flags], env=env, label=name)
        row.update(name=name, description=description)
        if "achieved_gflops" in row and rate:
            row["ratio"] = row["achieved_gflops"] / rate
            row["ratio_best"] = row["achieved_gflops_best"] / rate
            row["ratio_cpu"] = row["gflops_per_cpu_s"] / cpu_rate
            print(f"{name:<20} {row['images_per_s']:.3f} img/s, {row['achieved_gflops']:.0f} GFLOP/s "
                  f"(best {row['achieved_gflops_best']:.0f}) = {row['ratio']:.2f} / {row['ratio_best']:.2f} x matmul, "
                  f"per CPU-second {row['ratio_cpu']:.2f} x; "
                  f"first step {row['warmup_s'][0]:.0f} s; load {row.get('load_start', 0):.1f}", flush=True)
        rows.append(row)
    profiles = []
    if not args.no_profile:
        for label, variant in (("default", ""), (f"variant {args.profile_variant}", args.profile_variant)):
            extra = ["--variant", variant] if variant else []
            profile = run_worker("cpu_profile.py", ["--size", args.size, "--batch", args.batch, "--steps", 2,
                                                    "--warmup", 1, *extra], label=f"profile {label}")
            profile["label"] = label
            profiles.append(profile)
    ab = None
    if not args.no_ab:
        ab = run_worker("train_ab.py", ["--size", args.ab_size, "--batch", 8, "--rounds", 3,
                                        "--b-variant", args.profile_variant], label="train_ab")
    result = {"date": started, "command": "python benchmarks/cpu_tuning.py " + " ".join(map(str, argv)),
              "size": args.size, "batch": args.batch, "steps": args.steps, "matmul_gflops": rate, "matmul_gflops_per_cpu_s": cpu_rate,
              "matmul": matmul,
              "load_average_start": load_start, "load_average_end": os.getloadavg()[0], "rows": rows,
              "profiles": profiles, "train_ab": ab}
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    result["conclusions"] = previous.get("conclusions", [])  # written by hand after reading the numbers
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} at {time.strftime('%H:%M:%S')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
