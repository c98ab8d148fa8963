"""BTS (Lee et al. 2019) with ResNet-50: the official NYU and KITTI recipes and the Depth Toolbox's 24-epoch
NYU recipe, trained and evaluated here, printed beside the published numbers.

    python experiments/bts_table.py --data "list:nyu_{split}.txt@/data/nyu" --kitti-data "kitti:..." --out runs/bts
    python experiments/bts_table.py --quick           # synthetic scenes, a few minutes per row on a CPU

Published numbers (specs/other_models.md §3.9): the official model zoo (ResNet-50, 50 epochs) and
the Toolbox's logs at epoch 24 (its model card rounds them: 0.114 / 0.41, KITTI 0.059 / 2.50). The
NYU rows train on `--data`, the KITTI row on `--kitti-data` (skipped on real data without it; the
KITTI Toolbox line is printed for reference, there is no KITTI Toolbox recipe). `--quick` (the default
with `--data synthetic`) trains 40 steps at 64x96 with nf = bts_size 128 instead of 512, on synthetic
scenes for every row (see experiments/common.py).
"""

import common

# specs/other_models.md §3.9
ROWS = [
    {"label": "NYU, official (50 ep)", "recipe": "bts_nyu", "dataset": "nyu",
     "paper": dict(abs_rel=0.119, rmse=0.419, d1=0.865)},
    {"label": "NYU, Toolbox (24 ep)", "recipe": "bts_nyu_toolbox24", "dataset": "nyu",
     "paper": dict(abs_rel=0.1135, rmse=0.403, d1=0.871)},
    {"label": "KITTI Eigen, official (50 ep)", "recipe": "bts_kitti", "dataset": "kitti",
     "paper": dict(abs_rel=0.061, rmse=2.803)},
    {"label": "KITTI Eigen, Toolbox (24 ep)", "dataset": "kitti", "source": "paper (no recipe here)",
     "paper": dict(abs_rel=0.0586, rmse=2.480, d1=0.960)},
]


def main(argv=None):
    parser = common.experiment_parser(__doc__.splitlines()[0], "runs/bts_table", steps=40)
    parser.add_argument("--kitti-data", help="KITTI SPEC for the KITTI row (default: synthetic with --data "
                                             "synthetic, otherwise the row is skipped)")
    args = parser.parse_args(argv)

    data, quick, sets = common.experiment_setup(args, test_samples=16, deeplab=False)
    if quick:
        sets += ["model.options.bts_size=128"]  # a quarter of the decoder: minutes, not hours, on a CPU
    kitti = args.kitti_data or (data if args.data == "synthetic" else None)
    rows = []
    for row in ROWS:
        if row["dataset"] == "kitti" and kitti is None:
            print(f"skipping {row['label']}: no --kitti-data")
            continue
        rows.append({**row, "data": kitti if row["dataset"] == "kitti" else data})
    table = common.train_rows(rows, data, args.out, sets, quick, args.sets, val_data=args.val_data)
    title = (f"BTS ResNet-50 — published (NYU Depth v2 / KITTI Eigen test) vs ours "
             f"({data}{', quick' if quick else ''})")
    common.print_outputs(args.out, title, table, quick,
                         {"data": data, "kitti_data": kitti, "quick": quick, "sets": sets + args.sets},
                         paper_data="NYU Depth v2 and KITTI")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
