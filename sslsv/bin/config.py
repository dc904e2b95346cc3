"""Print values of an experiment config (defaults filled in), for recipes' shell glue.

  python -m sslsv.bin.config --config conf/x.yaml --get experiment scoring.backend
prints one value per line; with no --get, the whole resolved config as YAML.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from sslsv.config import ConfigError, config_to_dict, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--get", nargs="*", default=[], metavar="KEY")
    args = parser.parse_args(argv)
    try:
        cfg = config_to_dict(load_config(args.config))
        if not args.get:
            print(yaml.safe_dump(cfg, sort_keys=False), end="")
        for key in args.get:
            node = cfg
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"{args.config}: no config key {key!r}")
                node = node[part]
            print(" ".join(map(str, node)) if isinstance(node, list) else node)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
