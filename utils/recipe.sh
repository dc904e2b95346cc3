# Helpers of the recipe scripts (egs/TEMPLATE/sv.sh, egs/*/local/*.sh), sourced after
# utils/parse_options.sh.

log() { echo "$(date '+%H:%M:%S') [$(basename "$0")] $*" >&2; }
die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }

# check_stages LAST: --stage and --stop-stage must name stages 0..LAST of the pipeline, in
# order; anything else is a typo that must not silently run nothing.
check_stages() {
  local last=$1 var value
  for var in stage stop_stage; do
    value=${!var}
    [[ "$value" =~ ^[0-9]+$ ]] && [ "$value" -le "$last" ] \
      || die "--${var//_/-} $value: stages are 0 to $last"
  done
  [ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
}
