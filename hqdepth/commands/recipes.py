"""`hqdepth recipes [NAME]`: the training recipes, or one resolved recipe as YAML."""


def add_parser(subparsers):
    parser = subparsers.add_parser("recipes", help="list the training recipes, or show one in full")
    parser.add_argument("name", nargs="?", help="show this recipe resolved (base applied), as YAML")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML/JSON file merged over the recipe (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="override a field, e.g. optimizer.learning_rate=3e-4 (repeatable)")
    return parser


def run(args):
    import sys

    from hqdepth.training import recipes

    if args.name:
        config = recipes.resolve_config(args.name, args.config, args.sets)
        import yaml

        sys.stdout.write(yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=110))
        return 0
    print(f"{'recipe':<26} {'model':<22} {'loss':<10} {'input':<9} {'batch':>5} {'epochs':>6}  description")
    for config in recipes.list_recipes():
        size = "x".join(map(str, config["data"]["input_size"] or [])) or "any"
        print(f"{config['name']:<26} {config['model']['name']:<22} {config['loss']['name']:<10} {size:<9} "
              f"{config['train']['batch_size']:>5} {config['train']['epochs']:>6}  {config['description']}")
    print("\n`hqdepth recipes NAME` shows one in full; `hqdepth train NAME --data SPEC --out RUN` trains it.")
    return 0
