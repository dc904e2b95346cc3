# Stages 1-5 shared by every recipe (sourced by egs/*/run.sh after its own stage 0).
#
# Expects: stage stop_stage nj device config train_set test_sets mean_set models
#          feats_dir exp_dir, and data/<set> dirs made by stage 0 (test sets with trials*);
#          optionally the array train_overrides (KEY=VALUE config overrides for training).
# Each stage is one command per data set; finished outputs are reused, not redone.

scoring_backend=$(python -m sslsv.bin.config --config "$config" --get scoring.backend)
subtract_mean=$(python -m sslsv.bin.config --config "$config" --get scoring.subtract_mean)
p_targets=$(python -m sslsv.bin.config --config "$config" --get scoring.p_target)

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: log-mel features of: $train_set $test_sets"
  for set in $train_set $test_sets; do
    python -m sslsv.bin.compute_features --data "data/$set" --feats-dir "$feats_dir/$set" \
      --config conf/fbank.yaml --nj "$nj"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: SSL training -> $exp_dir"
  python -m sslsv.bin.train --config "$config" --data "data/$train_set" --exp-dir "$exp_dir" \
    --device "$device" ${train_overrides[@]+--override "${train_overrides[@]}"}
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for model in $models; do
    [ -f "$exp_dir/$model.pt" ] || die "stage 3: $exp_dir/$model.pt not found (run stage 2)"
    for set in $mean_set $test_sets; do
      log "stage 3: embeddings of data/$set with $model.pt"
      python -m sslsv.bin.extract --checkpoint "$exp_dir/$model.pt" --data "data/$set" \
        --output "$exp_dir/embeddings_$model/$set" --nj "$nj" --device "$device"
    done
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  for model in $models; do
    mean_opt=()
    if [ "$subtract_mean" = True ]; then
      mean_opt=(--mean-from "$exp_dir/embeddings_$model/$mean_set/embeddings.scp")
    fi
    for set in $test_sets; do
      for trials in "data/$set"/trials*; do
        name=${set}_$(basename "$trials")
        log "stage 4: $scoring_backend scores of $trials with $model.pt"
        emb="$exp_dir/embeddings_$model/$set/embeddings.scp"
        python -m sslsv.bin.score --backend "$scoring_backend" --trials "$trials" \
          --enroll "$emb" --test "$emb" "${mean_opt[@]}" \
          --output "$exp_dir/scores_$model/$name.scores"
      done
    done
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  results="$exp_dir/RESULTS"
  {
    echo "# $exp_dir: config $config, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "# model trials EER minDCF(p=...) (C_miss = C_fa = 1); final.pt is trained, init.pt untrained"
  } > "$results.tmp"
  for model in $models; do
    for set in $test_sets; do
      for trials in "data/$set"/trials*; do
        name=${set}_$(basename "$trials")
        scores="$exp_dir/scores_$model/$name.scores"
        python -m sslsv.bin.compute_metrics --trials "$trials" --scores "$scores" \
          --p-target $p_targets --plot-dir "$exp_dir/plots_$model/$name" \
          --output "$exp_dir/scores_$model/$name.metrics"
        metrics=$(grep -E '^(EER|minDCF)' "$exp_dir/scores_$model/$name.metrics" | tr '\n' ' ')
        echo "$model $name $metrics" >> "$results.tmp"
      done
    done
  done
  mv "$results.tmp" "$results"
  log "stage 5: $results"
  cat "$results"
fi
