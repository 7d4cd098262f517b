#!/bin/bash
# Runs a curadiff grid over N nodes as a Slurm job array, then merges the results.
#
# Every array task runs one shard of the grid's cells into the same shared folder:
#
#   curadiff bench --grid GRID --out OUT --shard $SLURM_ARRAY_TASK_ID/$SHARDS
#
# where SHARDS defaults to $SLURM_ARRAY_TASK_COUNT (N for --array=1-N).
#
# Shard i of N runs the cells whose index in the canonical order (seeds in the grid file's
# order, and for each seed the arms in order; counting from 0) is i-1 mod N, and appends to
# its own OUT/results.shard-i-of-N.jsonl, so no two tasks write the same file. A cell's
# numbers do not depend on which shard runs it (same config and seed, same numbers).
#
# Usage (from a login node; OUT must be on a file system every node sees):
#
#   GRID=benches/toy-ajest.toml OUT=/shared/runs/toy-ajest \
#     sbatch --array=1-4 docs/slurm-grid.sh
#
# The script submits the merge itself, as a job that starts when every array task has
# ended (afterany: a failed task leaves its cells missing, and the merge names them; set
# CURADIFF_NO_MERGE=1 to skip it):
#
#   curadiff bench --grid GRID --out OUT --report
#
# which writes OUT/results.jsonl (each cell once, in canonical order), OUT/report.md and the
# plots. Run that command by hand at any time to see the results so far.
#
# A task that was killed or timed out can be resubmitted alone, naming N
# (`GRID=... OUT=... SHARDS=4 sbatch --array=3 docs/slurm-grid.sh`), or the whole array
# again: finished cells are skipped, a cut cell runs again from its checkpoints, and a
# torn last line of the shard's results file is dropped with a warning. Keep N the same
# when resubmitting shards of a running grid: shards of different N would share cells.
# (A new N is fine once the old tasks have ended: cells complete in any results file of OUT
# are skipped.)
#
# Adjust the resources below to the grid: toy cells need one core-minute or so, image
# cells (fmnist presets) several core-minutes to hours, and image grids need the feature
# classifier (`curadiff classifier`) at images.classifier or its default path on every node.

#SBATCH --job-name=curadiff-grid
#SBATCH --array=1-4
#SBATCH --cpus-per-task=8
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%A_%a.out

set -euo pipefail

: "${GRID:?set GRID to the grid file, e.g. GRID=benches/toy-ajest.toml}"
: "${OUT:?set OUT to the shared output folder, e.g. OUT=/shared/runs/toy-ajest}"
CURADIFF=${CURADIFF:-curadiff}

: "${SLURM_ARRAY_TASK_ID:?run this script with sbatch --array=1-N}"
SHARDS=${SHARDS:-${SLURM_ARRAY_TASK_COUNT:?run this script with sbatch --array=1-N}}

mkdir -p "$OUT"

# The first task submits the merge, to run when the whole array has ended.
if [ "$SLURM_ARRAY_TASK_ID" = "${SLURM_ARRAY_TASK_MIN:-1}" ] && [ -z "${CURADIFF_NO_MERGE:-}" ]; then
    sbatch --dependency="afterany:${SLURM_ARRAY_JOB_ID}" \
        --job-name=curadiff-grid-report --cpus-per-task=1 --mem=2G --time=00:30:00 \
        --output="slurm-%x-%j.out" \
        --wrap="$CURADIFF bench --grid '$GRID' --out '$OUT' --report"
fi

exec "$CURADIFF" bench --grid "$GRID" --out "$OUT" \
    --shard "$SLURM_ARRAY_TASK_ID/$SHARDS"
