# Stages 1-5 shared by every recipe (sourced by egs/*/run.sh after its own stage 0).
#
# Expects: stage stop_stage nj device config train_set test_sets mean_set models
#          feats_dir exp_dir, and data/<set> dirs made by stage 0 (test sets with trials*);
#          ngpu nnodes node_rank master_addr master_port rdzv_endpoint (stage 2 processes),
#          optionally the array train_overrides (KEY=VALUE config overrides for training).
# Each stage is one command per data set; finished outputs are reused, not redone.

{
  read -r scoring_backend; read -r subtract_mean; read -r lda_dim; read -r whiten
  read -r plda_iters; read -r norm; read -r top_k; read -r cohort_speaker_means; read -r p_targets
  read -r crop_seconds; read -r num_crops; read -r extract_batch_size
} < <(python -m sslsv.bin.config --config "$config" --get scoring.backend scoring.subtract_mean \
  scoring.lda_dim scoring.whiten scoring.plda_iters scoring.norm scoring.top_k \
  scoring.cohort_speaker_means scoring.p_target \
  extract.crop_seconds extract.num_crops extract.batch_size)
[ -n "$extract_batch_size" ] || die "could not read the scoring and extract sections of $config"

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: log-mel features of: $train_set $test_sets"
  for set in $train_set $test_sets; do
    python -m sslsv.bin.compute_features --data "data/$set" --feats-dir "$feats_dir/$set" \
      --config conf/fbank.yaml --nj "$nj"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: SSL training -> $exp_dir"
  # One process, or torchrun over --ngpu processes per node and --nnodes nodes; the config's
  # train.batch_size is the global batch whatever the number of processes.
  launch=(python)
  if [ "$ngpu" -gt 1 ] || [ "$nnodes" -gt 1 ]; then
    launch=(torchrun --nnodes "$nnodes" --nproc-per-node "$ngpu")
    if [ -n "$rdzv_endpoint" ]; then
      launch+=(--rdzv-backend c10d --rdzv-endpoint "$rdzv_endpoint" --rdzv-id sslsv)
    elif [ "$nnodes" -gt 1 ]; then
      [ -n "$master_addr" ] || die "--nnodes $nnodes needs --master-addr or --rdzv-endpoint"
      launch+=(--node-rank "$node_rank" --master-addr "$master_addr" --master-port "$master_port")
    else
      launch+=(--standalone)
    fi
  fi
  "${launch[@]}" -m sslsv.bin.train --config "$config" --data "data/$train_set" \
    --exp-dir "$exp_dir" --device "$device" \
    ${train_overrides[@]+--override "${train_overrides[@]}"}
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for model in $models; do
    [ -f "$exp_dir/$model.pt" ] || die "stage 3: $exp_dir/$model.pt not found (run stage 2)"
    for set in $mean_set $test_sets; do
      log "stage 3: embeddings of data/$set with $model.pt"
      # The extract section of the config as it is now (not as it was when training).
      python -m sslsv.bin.extract --checkpoint "$exp_dir/$model.pt" --data "data/$set" \
        --output "$exp_dir/embeddings_$model/$set" --nj "$nj" --device "$device" \
        --crop-seconds "$crop_seconds" --num-crops "$num_crops" --batch-size "$extract_batch_size"
    done
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  for model in $models; do
    # The training subset's embeddings: mean, PLDA training data and cohort.
    train_emb="$exp_dir/embeddings_$model/$mean_set/embeddings.scp"
    score_opts=(--backend "$scoring_backend")
    if [ "$scoring_backend" = cosine ] && [ "$subtract_mean" = True ]; then
      score_opts+=(--mean-from "$train_emb")
    fi
    if [ "$scoring_backend" = plda ]; then
      score_opts+=(--train "$train_emb" --train-utt2spk "data/$mean_set/utt2spk"
        --lda-dim "$lda_dim" --plda-iters "$plda_iters"
        --backend-model "$exp_dir/backend_$model/plda.npz")
      [ "$whiten" = True ] && score_opts+=(--whiten)
    fi
    if [ "$norm" != none ]; then
      score_opts+=(--norm "$norm" --cohort "$train_emb" --top-k "$top_k")
      [ "$cohort_speaker_means" = True ] && score_opts+=(--cohort-utt2spk "data/$mean_set/utt2spk")
    fi
    for set in $test_sets; do
      for trials in "data/$set"/trials*; do
        name=${set}_$(basename "$trials")
        log "stage 4: $scoring_backend scores (norm $norm) of $trials with $model.pt"
        emb="$exp_dir/embeddings_$model/$set/embeddings.scp"
        python -m sslsv.bin.score "${score_opts[@]}" --trials "$trials" \
          --enroll "$emb" --test "$emb" --output "$exp_dir/scores_$model/$name.scores"
      done
    done
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  results="$exp_dir/RESULTS"
  {
    echo "# $exp_dir: config $config, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "# model trials EER minDCF(p=...) (C_miss = C_fa = 1); final.pt is trained, init.pt untrained"
    case $crop_seconds in
      0 | 0.0) embeddings="whole utterances" ;;
      *) embeddings="mean of $num_crops crops of $crop_seconds s" ;;
    esac
    echo "# embeddings: $embeddings; scoring: $scoring_backend, score normalisation: $norm"
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
