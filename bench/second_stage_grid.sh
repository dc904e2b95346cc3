#!/usr/bin/env bash
# The second stage's variants over several seeds, on a recipe whose stages 0-5 are done: for
# each seed and variant, stages 6-9 of the recipe (--rounds rounds, the variant's fine-tuning,
# the label-free choice; no supervised ceiling) with RESULTS in exp/grid/<variant>_seed<N>/,
# then bench/second_stage_table.py's table of them (docs/SECOND_STAGE.md).
#
#   bench/second_stage_grid.sh RECIPE-DIR "VARIANT ..." "SEED ..." [run.sh options]
#   e.g. bench/second_stage_grid.sh egs/mini \
#     "conf/classifier_pl.yaml conf/classifier_pl_gate.yaml \
#      conf/classifier_pl_gate_lc.yaml conf/classifier_pl_gate_lc.yaml+conf/classifier_lmft.yaml" \
#     "0 1 2"
#
# A variant is a second-stage config, or CONFIG+LMFT-CONFIG (the rounds, then large-margin
# fine-tuning). Every variant of a seed has the same rounds and epochs; reruns reuse what is
# done (the recipe's steps).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,16p' "$0" >&2; exit 1; }
bench=$(dirname "$(readlink -f "$0")")
recipe=$1
variants=$2
seeds=$3
shift 3
cd "$recipe"
tables=()
for seed in $seeds; do
  for variant in $variants; do
    config=${variant%%+*}
    lmft=
    [ "$variant" = "$config" ] || lmft=${variant#*+}
    name=$(basename "$config" .yaml)${lmft:++$(basename "$lmft" .yaml)}
    out=exp/grid/${name}_seed$seed
    echo "$(date '+%F %T') $recipe: $name, seed $seed -> $out" >&2
    mkdir -p exp/grid
    start=$SECONDS
    ./run.sh --stage 6 --pl-config "$config" --lmft-config "$lmft" --pl-train-seed "$seed" \
      --supervised false --results-dir "$out" "$@" > "$out.log" 2>&1 \
      || { echo "failed: see $recipe/$out.log" >&2; exit 1; }
    echo "$((SECONDS - start))" > "$out/seconds"
    tables+=("$out")
  done
done
"${SSLSV_PYTHON:-$bench/../.venv/bin/python}" "$bench/second_stage_table.py" "${tables[@]}"
