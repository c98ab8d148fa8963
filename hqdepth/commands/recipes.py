"""`hqdepth recipes [NAME] [--sources]`: the training recipes, one resolved recipe as YAML, or where
each setting of a paper recipe comes from (`hqdepth.training.recipe_sources`)."""


def add_parser(subparsers):
    parser = subparsers.add_parser("recipes", help="list the training recipes, or show one in full")
    parser.add_argument("name", nargs="?", help="show this recipe resolved (base applied), as YAML")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML/JSON file merged over the recipe (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="override a field, e.g. optimizer.learning_rate=3e-4 (repeatable)")
    parser.add_argument("--sources", action="store_true",
                        help="print each setting beside the paper's and the official code's value, its source "
                             "and whether it is faithful, a documented deviation or reconstructed")
    parser.add_argument("--status", choices=("faithful", "deviation", "reconstructed"),
                        help="with --sources: only the settings of this status")
    parser.add_argument("--markdown", action="store_true",
                        help="with --sources: one Markdown table (for documentation pages)")
    return parser


def run(args):
    import sys

    from hqdepth.errors import ConfigError
    from hqdepth.training import recipes

    if not args.name and (args.sources or args.status or args.markdown or args.sets or args.config):
        raise ConfigError("--sources, --status, --markdown, --set and --config need a recipe NAME (`hqdepth recipes` "
                          "lists them).")
    if args.sources or args.status or args.markdown:
        config = recipes.resolve_config(args.name, args.config, args.sets)
        if args.markdown:
            sys.stdout.write(sources_markdown(args.name, config, status=args.status) + "\n")
        else:
            print_sources(args.name, config, status=args.status)
        return 0
    if args.name:
        config = recipes.resolve_config(args.name, args.config, args.sets)
        sys.stdout.write(recipes.dump_yaml(config))
        return 0
    from hqdepth.training import recipe_sources

    print(f"{'recipe':<26} {'model':<22} {'loss':<19} {'input':<9} {'batch':>5} {'length':>10}  description")
    for config in recipes.list_recipes():
        size = "x".join(map(str, config["data"]["input_size"] or [])) or "any"
        train = config["train"]
        length = f"{train['total_steps']} st" if train.get("total_steps") else f"{train['epochs']} ep"
        print(f"{config['name']:<26} {config['model']['name']:<22} {config['loss']['name']:<19} {size:<9} "
              f"{train['batch_size']:>5} {length:>10}  {config['description']}")
    print("\nlength: optimizer steps (st) or epochs (ep) of the training data. `hqdepth recipes NAME` shows one in "
          "full; `hqdepth train NAME --data SPEC --out RUN` trains it.")
    if recipe_sources.sourced_recipes():
        print("`hqdepth recipes NAME --sources` traces each setting to the paper and the official code.")
    return 0


def print_sources(name, config, status=None, print_fn=print):
    """Print the sources table of recipe `name` against `config` (the recipe as resolved, overrides included).

    One block per setting: the dotted field, our value and the status, then the paper's value, the
    official code's value, the source and the note. A setting changed by `--set`/`--config` is marked
    `changed` with the table's value beside it; settings the table does not trace are listed at the end.
    """
    import textwrap

    from hqdepth.training import recipe_sources as rs

    recipe_name = config.get("name") or name
    if not rs.has_sources(recipe_name):
        from hqdepth.errors import ConfigError

        raise ConfigError(f"recipe {recipe_name!r} has no sources table; tables: {', '.join(rs.sourced_recipes())}.")
    table = rs.load_sources(recipe_name)
    print_fn(f"Sources of recipe {recipe_name}" + (f": {config['paper']}" if config.get("paper") else ""))
    for key, text in table["references"].items():
        print_fn(textwrap.fill(f"[{key}] {text}", width=110, initial_indent="  ", subsequent_indent="      "))
    print_fn("status: faithful = as the paper/official code; deviation = knowingly different (note says why); "
             "reconstructed = paper and code silent, our choice.")
    changed = 0
    for key, entry in table["settings"].items():
        if status and entry.get("status") != status:
            continue
        value = rs.recipe_value(config, key)
        mark = entry.get("status", "?")
        ours = rs.format_value(value)
        if not rs.same_value(value, entry.get("ours")):
            mark += ", changed"
            ours += f"  (recipe as published here: {rs.format_value(entry.get('ours'))})"
            changed += 1
        print_fn(f"\n{key} = {ours}  [{mark}]")
        for field, label in (("paper", "paper"), ("code", "code"), ("source", "source"), ("note", "note")):
            text = entry.get(field)
            if text is None or text == "":
                if field in ("paper", "code"):
                    text = "not stated" if field == "paper" else "–"
                else:
                    continue
            print_fn(textwrap.fill(f"{label}: {rs.format_value(text)}", width=110, initial_indent="    ",
                                   subsequent_indent="        "))
    untraced = {key: value for key, value in rs.traced_settings(config).items() if key not in table["settings"]}
    if untraced and not status:
        print_fn("\nNot in the table (set by an override or a newer recipe):")
        for key, value in untraced.items():
            print_fn(f"    {key} = {rs.format_value(value)}")
    counts = rs.summary(table)
    print_fn(f"\n{len(table['settings'])} settings: " + ", ".join(f"{n} {s}" for s, n in counts.items())
             + (f"; {changed} changed by overrides" if changed else "") + ".")


def sources_markdown(name, config, status=None):
    """The sources table of recipe `name` as one Markdown table (setting, ours, paper, official code,
    source, status, note), with its references above it; `config` as in `print_sources`."""
    from hqdepth.training import recipe_sources as rs

    table = rs.load_sources(config.get("name") or name)

    def cell(text):
        return "–" if text is None or text == "" else str(text).replace("|", "\\|").replace("\n", " ").strip()

    lines = [f"**{table['recipe']}**" + (f": {config['paper']}" if config.get("paper") else ""), ""]
    lines += [f"- `{key}`: {cell(text)}" for key, text in table["references"].items()]
    lines += ["", "| setting | ours | paper | official code | source | status | note |", "|---|---|---|---|---|---|---|"]
    for key, entry in table["settings"].items():
        if status and entry.get("status") != status:
            continue
        value = rs.format_value(rs.recipe_value(config, key))
        mark = entry.get("status", "?")
        if not rs.same_value(rs.recipe_value(config, key), entry.get("ours")):
            mark += f" (changed; table: {rs.format_value(entry.get('ours'))})"
        lines.append("| " + " | ".join([f"`{key}`", f"`{value}`", cell(entry.get("paper")), cell(entry.get("code")),
                                         cell(entry.get("source")), mark, cell(entry.get("note"))]) + " |")
    return "\n".join(lines)
