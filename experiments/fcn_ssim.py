"""FCN autoencoder with SSIM + MSE loss (seed report 001): the `fcn_ssim_mse` recipe trained and evaluated,
RMSE and SSIM of its depth maps beside the usual depth metrics.

    python experiments/fcn_ssim.py --data nyu-mat:nyu_depth_v2_labeled.mat --set data.val_split=test \
        --out runs/fcn_ssim
    python experiments/fcn_ssim.py --quick            # synthetic scenes, a few minutes on a CPU

The report states the model size (~0.5 M parameters), the loss and the training set (NYU Depth v2
labeled, 1449 frames) but gives no quantitative results (specs/other_models.md §1): there is no paper
line to compare with. On real data the recipe's protocol applies (nyu-eigen on the official 654 test frames,
training on the 795; nyu-mat has no validation split, hence `--set data.val_split=test`: report the final model,
not best.keras, which is then chosen on the test frames). The ground truth is the labeled set's filled `depths`;
BTS's nyu-eigen reads the raw ones (`hqdepth train ... --test-data "nyu-mat:FILE?depth=raw"`).
`--quick` (the default with `--data synthetic`) trains 150 steps at 64x96 with BN momentum 0.9
(see experiments/common.py).
"""

import common

LABEL = "FCN autoencoder, SSIM + MSE (seed 001)"


def main(argv=None):
    parser = common.experiment_parser(__doc__, "runs/fcn_ssim", steps=150)
    args = parser.parse_args(argv)

    from hqdepth.strict_json import number  # a metric that is not finite is None

    data, quick, sets = common.experiment_setup(args, deeplab=False)
    if quick:
        sets += ["model.options.bn_momentum=0.9"]  # the moving statistics follow a short run
    table = common.train_rows([{"label": LABEL, "recipe": "fcn_ssim_mse"}], data, args.out, sets, quick, args.sets,
                              val_data=args.val_data)
    ours = table[-1]
    title = f"FCN autoencoder with SSIM + MSE — ours ({data}{', quick' if quick else ''}); the report has no numbers"
    common.print_outputs(args.out, title, table, quick, {"data": data, "quick": quick, "sets": sets + args.sets},
                         columns=common.COLUMNS + [common.SSIM_COLUMN],
                         notes=["\nSeed report 001 gives no quantitative results (no paper line).",
                                f"Ours: RMSE {number(ours.get('rmse'), '.3f')} m, "
                                f"SSIM {number(ours.get('ssim'), '.3f')}."],
                         quick_note="Quick runs check the machinery; numbers worth reporting "
                                    "need NYU Depth v2.")
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run(main))
