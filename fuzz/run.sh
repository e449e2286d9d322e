#!/usr/bin/env bash
# Runs every fuzz target, or the ones named, one after another, each for SECONDS (default 300).
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo fuzz pass its -Z flags to stable rustc.
# New inputs go to corpus/TARGET, which is not committed, and seeds/TARGET contains the committed
# seeds. Crashes go to artifacts/TARGET, and the output of each run goes to logs/TARGET.log.
set -uo pipefail
cd "$(dirname "$0")"

seconds=${SECONDS_PER_TARGET:-300}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(map_message timestamp number datafile config http_body)
fi

export RUSTC_BOOTSTRAP=1
cargo +stable fuzz build -O
mkdir -p logs
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "fuzzing $target for ${seconds}s"
  cargo +stable fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -artifact_prefix="artifacts/$target/" >"logs/$target.log" 2>&1
  echo "$target: exit $?, $(ls "artifacts/$target" | wc -l) artifacts"
done
