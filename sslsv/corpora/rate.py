"""The sample rate of data preparation: the experiment config's ``features.sample_rate``.

Data preparation runs before anything else reads the config, yet what it writes depends on the rate:
an import expects its audio at it (a file at another rate is refused, or with
``--allow-resample`` kept with its rate in ``utt2sr``), VoxCeleb2's m4a files are decoded to
it, the augmentation sets and the synthetic corpus are written at it. So its programs
(``prepare_data``, ``make_aug_sets``, ``make_mini_corpus``) take the experiment config,
``--config CONF``, and read that one key of it; without a config the rate is the schema's
default (:class:`sslsv.config.schema.FeaturesConfig`), written down there alone.
"""

from __future__ import annotations

import argparse

from sslsv import cli
from sslsv.config.schema import FeaturesConfig
from sslsv.errors import ConfigError

#: The rate of data preparation without a config: the experiment's default ``features.sample_rate``.
DEFAULT_SAMPLE_RATE: int = FeaturesConfig().sample_rate


def add_rate_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--config CONF`` and ``--sample-rate HZ``: the rate ``what`` is at (a phrase such as
    "the audio is written"); read back with :func:`sample_rate_of`."""
    parser.add_argument(
        "--config",
        metavar="CONF",
        help=f"the experiment config: {what} at its features.sample_rate (the config is "
        f"checked whole, that key alone used; default {DEFAULT_SAMPLE_RATE} Hz, the config's)",
    )
    parser.add_argument(
        "--sample-rate",
        type=cli.at_least(int, 1),
        metavar="HZ",
        help="the rate itself, for a run without --config (with one, it must agree)",
    )


def sample_rate_of(args: argparse.Namespace) -> int:
    """The rate of a stage-0 command: ``--config``'s ``features.sample_rate``, else
    ``--sample-rate``, else :data:`DEFAULT_SAMPLE_RATE`. A config is checked whole when read
    (a bad one is an error naming its key); a ``--sample-rate`` it contradicts is refused."""
    if args.config is None:
        return args.sample_rate or DEFAULT_SAMPLE_RATE
    # Imported here: checking a config imports the registries (torch), which a run without
    # one does not need.
    from sslsv.config.load import load_config

    rate = load_config(args.config).features.sample_rate
    if args.sample_rate is not None and args.sample_rate != rate:
        raise ConfigError(
            f"--sample-rate {args.sample_rate} contradicts features.sample_rate {rate} of "
            f"--config {args.config}: give one of them"
        )
    return rate
