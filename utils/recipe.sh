# Helpers for egs/*/run.sh, sourced after utils/parse_options.sh.

log() { echo "$(date '+%H:%M:%S') [$(basename "$0")] $*" >&2; }
die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }

# Stages are 0..5; anything else is a typo that must not silently run nothing.
for var in stage stop_stage; do
  value=${!var}
  [[ "$value" =~ ^[0-9]+$ ]] && [ "$value" -le 5 ] \
    || die "--${var//_/-} $value: stages are 0 to 5"
done
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
