# Sourced by benches/perf.sh and benches/cluster.sh: `fill_memory DIR` fills the machine's free
# memory with clean page cache before a run, and `drop_fill DIR` deletes what it wrote.
#
# Why: this VM's balloon device reports free guest memory to the host (virtio-balloon
# REPORTING; /sys/module/page_reporting), and the host discards it. The first write to such a
# page then faults in the host, so a broker whose page cache grows into free memory pays for it
# in every copy into the page cache (`copy_folio_from_iter_atomic`, ~400 MB/s per core instead
# of several GB/s; 2026-12-07: touching 3 GiB of fresh memory ran at 427 MB/s, the same again
# right after at 2488 MB/s). On a machine that has run a while, free memory is low and the page
# cache recycles its own pages, which are backed; a run right after its data directory (or the
# page cache) was dropped measures the host instead. The same RF 1 produce run gave 599 MB/s
# with 24 GiB free and 989 MB/s with the free memory filled first.
#
# So: write a file of the free memory's size less 512 MiB (the kernel keeps some free anyway),
# written back (`sync`), kept during the run; its clean pages are what the broker's writes
# reclaim. Called again (after a run's data was deleted), it first reads its earlier files back
# into the page cache, which refills what was freed without using more disk, and writes another
# file only for what is still free. FILL=0 skips it (to measure a machine with free memory).
fill_memory() { # DIR
  [[ ${FILL:-1} != 0 ]] || return 0
  mkdir -p "$1"
  local files free_mib
  files=$(find "$1" -maxdepth 1 -name 'fill.*' | wc -l)
  ((files == 0)) || cat "$1"/fill.* >/dev/null
  free_mib=$(awk '/^MemFree:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
  ((free_mib > 1024)) || return 0
  dd if=/dev/zero of="$1/fill.$files" bs=1M count=$((free_mib - 512)) status=none
  sync
  # The virtual disk is still busy with what was just written (and with the discards of files
  # deleted before: the file system is mounted with `discard`) after `sync` returns.
  sleep "${FILL_SETTLE:-15}"
}
drop_fill() { # DIR
  rm -f "$1"/fill.*
}
