#!/usr/bin/env bash
# The default training corpus: the King James Bible from Debian's bible-kjv package
# (public domain), as plain text with a fixed held-out split.
#
#   scripts/kjv_corpus.sh [OUT_DIR]      (default: out/corpus)
#
# Writes OUT_DIR/kjv.train.txt (Genesis .. Philemon, 57 books) and OUT_DIR/kjv.val.txt
# (Hebrews .. Revelation, the last 9 books, ~3.7% of the text). Format: one verse per line
# without its number, each chapter introduced by a blank line and its title ("Genesis 1").
# The output is a pure function of the package text: the script checks the md5 of the
# result, so a different bible-kjv version is reported instead of silently training on
# different data.
set -euo pipefail
out_dir=${1:-out/corpus}
command -v bible >/dev/null || { echo "kjv_corpus.sh: error: 'bible' not found (apt-get install bible-kjv; scripts/setup.sh installs it)" >&2; exit 1; }
mkdir -p "$out_dir"

# bible -l0: no line wrapping. Lines are "Genesis 1" (chapter title), "" and
# "  1 In the beginning ..." (verse number, text).
format() {
  bible -l0 "$1" | awk '
    /^$/ { next }
    /^ +[0-9]+ / { sub(/^ +[0-9]+ /, ""); print; next }
    { if (NR > 2) print ""; print }'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
format "Gen1:1-Phm1:25" > "$tmp/train.txt"
format "Heb1:1-Rev22:21" > "$tmp/val.txt"

expect_train=22e1fe53705aa15fa97413d23ec5a2ec
expect_val=906d6d040d2b9031a64166f5fc12f773
got_train=$(md5sum < "$tmp/train.txt" | cut -d' ' -f1)
got_val=$(md5sum < "$tmp/val.txt" | cut -d' ' -f1)
if [[ "$got_train" != "$expect_train" || "$got_val" != "$expect_val" ]]; then
  echo "kjv_corpus.sh: warning: the corpus differs from the one the bundled model was trained on" \
       "(md5 train $got_train, val $got_val; expected $expect_train, $expect_val)." \
       "Different bible-kjv version?" >&2
fi
mv "$tmp/train.txt" "$out_dir/kjv.train.txt"
mv "$tmp/val.txt" "$out_dir/kjv.val.txt"
echo "kjv_corpus.sh: $(wc -c < "$out_dir/kjv.train.txt") bytes -> $out_dir/kjv.train.txt," \
     "$(wc -c < "$out_dir/kjv.val.txt") bytes -> $out_dir/kjv.val.txt" >&2
