# Option parsing for recipe scripts, in the manner of Kaldi's parse_options.sh.
#
# Source it after the script has set its variables (their defaults):
#     stage=0
#     nj=4
#     corpus="/data/my corpus"
#     . utils/parse_options.sh
# then `--nj 8`, `--nj=8` or `--corpus "/other path"` override them; dashes in option names
# become underscores (`--stop-stage 3` sets stop_stage). Only variables that are already set
# and whose names are lower-case identifiers can be options (so PATH, HOME and the like never
# are), except --stage and --stop-stage, which are always accepted and must be integers.
# Parsing stops at `--` or at the first argument not starting with `--`; the remaining
# positional arguments are left in "$@". An unknown option is an error naming it (exit 1),
# except in a script that declares the array `_unknown_options=()` before sourcing this file:
# there each unknown option is appended to it with its value, as given (`--name value`: two
# words, `--name=value`: one), for the script whose options they are (egs/TEMPLATE/sv.sh
# passes them on to the recipe's data preparation, local/data.sh, which checks them).
# `--help` (or `-h`) prints $help_message when the script sets it, then each variable set
# before the `. utils/parse_options.sh` line of the script with its current value (exit 0).
# Values are assigned with printf -v: nothing read from the command line is ever evaluated.

__po_usage() {
  [ -n "${help_message:-}" ] && printf '%s\n' "$help_message"
  printf 'Options (current values):\n'
  local __po_script="$0" __po_line __po_var
  # Recipes cd into their own directory first, which can break a relative $0.
  [ -f "$__po_script" ] || __po_script="./$(basename "$0")"
  if [ -f "$__po_script" ]; then
    while IFS= read -r __po_line || [ -n "$__po_line" ]; do
      case "$__po_line" in
        *parse_options.sh*) break ;;
      esac
      if [[ "$__po_line" =~ ^[[:space:]]*([a-z][a-z0-9_]*)= ]]; then
        __po_var="${BASH_REMATCH[1]}"
        [ "$__po_var" = help_message ] && continue
        if [ -n "${!__po_var+set}" ]; then
          printf '  --%-20s %s\n' "${__po_var//_/-}" "${!__po_var}"
        fi
      fi
    done < "$__po_script"
  fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -h|--help) __po_usage; exit 0 ;;
    --*=*) __po_opt="${1%%=*}"; __po_value="${1#*=}"; __po_shift=1 ;;
    --*)
      __po_opt="$1"
      if [ "$#" -lt 2 ]; then
        echo "$0: option $__po_opt needs a value" >&2
        exit 1
      fi
      __po_value="$2"; __po_shift=2 ;;
    *) break ;;
  esac
  __po_name="${__po_opt#--}"
  __po_name="${__po_name//-/_}"
  if ! [[ "$__po_name" =~ ^[a-z][a-z0-9_]*$ ]]; then
    echo "$0: invalid option $__po_opt (options are lower-case names like --stop-stage)" >&2
    exit 1
  fi
  case "$__po_name" in
    stage|stop_stage)
      if ! [[ "$__po_value" =~ ^-?[0-9]+$ ]]; then
        echo "$0: option $__po_opt needs an integer, got '$__po_value'" >&2
        exit 1
      fi ;;
    __po_*|help_message)
      echo "$0: invalid option $__po_opt" >&2
      exit 1 ;;
    *)
      if [ -z "${!__po_name+set}" ]; then
        if declare -p _unknown_options > /dev/null 2>&1; then
          _unknown_options+=("${@:1:__po_shift}")
          shift "$__po_shift"
          continue
        fi
        echo "$0: unknown option $__po_opt (no variable '$__po_name' is set in this script;" \
          "see --help)" >&2
        exit 1
      fi ;;
  esac
  if ! printf -v "$__po_name" '%s' "$__po_value" 2>/dev/null; then
    echo "$0: cannot set option $__po_opt (variable '$__po_name' is read-only)" >&2
    exit 1
  fi
  shift "$__po_shift"
done
unset __po_opt __po_value __po_shift __po_name
unset -f __po_usage
true
