"""BTS (Lee et al. 2019) with ResNet-50: the official NYU and KITTI recipes and the Depth Toolbox's 24-epoch
NYU recipe, trained and evaluated here, printed beside the published numbers.

    python experiments/bts_table.py --data "list:nyudepthv2_train_files_with_gt.txt@/data/nyu/sync?dataset=nyu" \
        --val-data "list:nyudepthv2_test_files_with_gt.txt@/data/nyu/official_splits/test?dataset=nyu" \
        --test-data "list:nyudepthv2_test_files_with_gt.txt@/data/nyu/official_splits/test?dataset=nyu" \
        --kitti-data "kitti:..." --kitti-val-data "kitti:..." --kitti-test-data "kitti:..." --out runs/bts
    python experiments/bts_table.py --quick           # synthetic scenes, a few minutes per row on a CPU

Published numbers (specs/other_models.md §3.9): the official model zoo (cleinc/bts README, ResNet-50,
50 epochs, one forward pass per image) and the Toolbox's logs at epoch 24 (its model card rounds them:
0.114 / 0.41, KITTI 0.059 / 2.50), which are measured **with flip test-time augmentation** (the Toolbox's
MultiScaleFlipAug averages in the prediction of the mirrored image). Our Toolbox line is measured the same way
(the recipe's `evaluation.flip`), our other lines in one pass, no flip, like the official numbers; each line's
note under the table says how it was measured. The
NYU rows train on `--data`, the KITTI row on `--kitti-data` (skipped on real data without it; the
KITTI Toolbox line is printed for reference, there is no KITTI Toolbox recipe). `--quick` (the default
with `--data synthetic`) trains 40 steps at 64x96 with nf = bts_size 128 instead of 512, batch 8 on synthetic
scenes, batch 2 on real data (a few frames fill it); each row's note says which (see experiments/common.py).
BTS's lists have no test split: a full run stops before training unless --test-data (--kitti-test-data) gives
the test list, so that no row is scored on its training frames (the docs' reproducing page has the lists).
"""

import common

# How each published line was measured, and ours (printed as numbered notes under the table).
OFFICIAL_NYU = ("cleinc/bts README model zoo (bts_nyu_v2_pytorch_resnet50): one pass, no flip, full 480x640 test "
                "frame, Eigen crop rows 45:471 cols 41:601, 1e-3 < gt < 10 m, per-image mean (eval_with_pngs.py).")
OFFICIAL_KITTI = ("cleinc/bts README model zoo (bts_eigen_v2_pytorch_resnet50): one pass, no flip, KB crop "
                  "352x1216 pasted into the full frame, Garg crop, 1e-3 < gt < 80 m, per-image mean.")
TOOLBOX_NYU = ("Depth Toolbox log bts_r50_nyu_24e, epoch 24: WITH flip test-time augmentation (MultiScaleFlipAug "
               "flip=True), Eigen crop, 1e-3 .. 10 m.")
TOOLBOX_KITTI = ("Depth Toolbox log bts_r50_kitti_24e, epoch 24: WITH flip test-time augmentation, KB crop, Garg "
                 "crop, 1e-3 .. 80 m; no KITTI Toolbox recipe here.")
OURS_NYU = ("Ours: one pass, no flip, the whole 480x640 frame (the model rebuilt at a free input size), protocol "
            "nyu-eigen (the official evaluator's crop, range and averaging).")
OURS_NYU_FLIP = ("Ours: WITH flip test-time augmentation (the recipe's evaluation.flip, as the Toolbox), the whole "
                 "480x640 frame (the model rebuilt at a free input size), protocol nyu-eigen.")
QUICK_FLIP = " With flip test-time augmentation (the recipe's evaluation.flip), as the Toolbox line."
OURS_KITTI = ("Ours: one pass, no flip, KB crop 352x1216 at native resolution with each frame's focal, pasted into a "
              "zero canvas, protocol kitti-garg (the official evaluator's crops, range and averaging).")

# specs/other_models.md §3.9; the full lines from cleinc/bts README.md (model zoo) and the Toolbox logs
# (configs/bts/resources/logs/bts_r50_{nyu,kitti}_24e.txt, epoch 24).
ROWS = [
    {"label": "NYU, official (50 ep)", "recipe": "bts_nyu", "dataset": "nyu", "paper_note": OFFICIAL_NYU,
     "paper": dict(abs_rel=0.119, sq_rel=0.075, log10=0.051, rmse=0.419, rmse_log=0.152, d1=0.865, d2=0.975,
                   d3=0.993)},
    {"label": "NYU, Toolbox (24 ep)", "recipe": "bts_nyu_toolbox24", "dataset": "nyu", "paper_note": TOOLBOX_NYU,
     "ours_note": OURS_NYU_FLIP,
     "paper": dict(abs_rel=0.1135, sq_rel=0.0671, log10=0.0488, rmse=0.4033, rmse_log=0.1458, d1=0.8708,
                   d2=0.9784, d3=0.9956)},
    {"label": "KITTI Eigen, official (50 ep)", "recipe": "bts_kitti", "dataset": "kitti", "paper_note": OFFICIAL_KITTI,
     "paper": dict(abs_rel=0.061, sq_rel=0.250, log10=0.027, rmse=2.803, rmse_log=0.098, d1=0.954, d2=0.992,
                   d3=0.998)},
    {"label": "KITTI Eigen, Toolbox (24 ep)", "dataset": "kitti", "source": "paper (no recipe here)",
     "paper_note": TOOLBOX_KITTI,
     "paper": dict(abs_rel=0.0586, sq_rel=0.2060, log10=0.0262, rmse=2.4798, rmse_log=0.0916, d1=0.9602, d2=0.9940,
                   d3=0.9986)},
]


def main(argv=None):
    parser = common.experiment_parser(__doc__, "runs/bts_table", steps=40)
    parser.add_argument("--kitti-data", help="KITTI SPEC for the KITTI row (default: synthetic with --data "
                                             "synthetic, otherwise the row is skipped)")
    parser.add_argument("--kitti-val-data", help="validation SPEC of the KITTI row (default: --kitti-data; "
                                                 "--val-data is for the NYU rows)")
    parser.add_argument("--kitti-test-data", help="test SPEC of the KITTI row (default: --kitti-data; "
                                                  "--test-data is for the NYU rows)")
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
        is_kitti = row["dataset"] == "kitti"
        spec = kitti if is_kitti else data
        row_sets = []
        if quick and is_kitti and data.startswith("synthetic") and not spec.startswith("synthetic"):
            row_sets = [f"train.batch_size={common.QUICK_REAL_BATCH}"]  # real KITTI beside synthetic NYU rows
        ours = row.get("ours_note", OURS_KITTI if is_kitti else OURS_NYU)
        if quick:
            ours = common.quick_note(spec, sets + row_sets + args.sets) + (QUICK_FLIP if ours == OURS_NYU_FLIP else "")
        rows.append({**row, "data": spec, "note": ours, "sets": row_sets,
                     "val_data": args.kitti_val_data if is_kitti else args.val_data,
                     "test_data": args.kitti_test_data if is_kitti else args.test_data})
    table = common.train_rows(rows, data, args.out, sets, quick, args.sets, val_data=args.val_data)
    title = (f"BTS ResNet-50 — published (NYU Depth v2 / KITTI Eigen test) vs ours "
             f"({data}{', quick' if quick else ''})")
    common.print_outputs(args.out, title, table, quick,
                         {"data": data, "kitti_data": kitti, "quick": quick, "sets": sets + args.sets},
                         paper_data="NYU Depth v2 and KITTI")
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run(main))
