"""Check an experiment config and print it, or some of its values (defaults filled in).

  python -m sslsv.bin.config --config conf/x.yaml [--get experiment train.epochs]
  python -m sslsv.bin.config --config conf/x.yaml --reads-training-set

Reads the config (and its base: files) and checks all of it, as every stage does when it
loads it: a recipe calls this first, so a bad key fails before any data is prepared. Prints
one value per --get key, one per line; with no --get, the whole resolved config as YAML.
--reads-training-set prints whether scoring with the config reads the training set's
embeddings (a back end that trains on them, or a score normalisation's cohort): true or
false, as the back-end registry says.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from sslsv import cli
from sslsv.config.load import config_to_dict, load_config
from sslsv.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, "python -m sslsv.bin.config")
    p.add_argument("--config", required=True)
    p.add_argument("--get", nargs="*", default=[], metavar="KEY")
    p.add_argument("--reads-training-set", action="store_true")
    return p


def show(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    if args.reads_training_set:
        from sslsv.backend import reads_training_set

        print(str(reads_training_set(config.scoring)).lower())
        return
    cfg = config_to_dict(config)
    if not args.get:
        print(yaml.safe_dump(cfg, sort_keys=False), end="")
    for key in args.get:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{args.config}: no config key {key!r}")
            node = node[part]
        print(" ".join(map(str, node)) if isinstance(node, list) else node)


def main(argv: list[str] | None = None) -> int:
    return cli.run(show, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
