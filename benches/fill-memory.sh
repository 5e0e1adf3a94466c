# Sourced by benches/perf.sh and benches/cluster.sh: `fill_memory DIR` fills the machine's free
# memory with clean page cache before a run, and `drop_fill DIR` deletes what it made.
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
# So: read a sparse file of the free memory's size less 512 MiB (the kernel keeps some free
# anyway). Its holes read as zeroes and are cached like any file's pages — clean, so the
# broker's writes reclaim them — but it takes no disk space and writes nothing (until
# 2026-12-08 this wrote a real file: up to 20 GiB of disk, which with an RF 3 run's three copies
# filled the disk, and seconds of writeback to wait out). Called again (after a run's data was
# deleted), it first reads the file again, which brings back the pages the run evicted, then
# grows it by what is still free and reads only the new part. FILL=0 skips it (to measure a
# machine with free memory). The file must be on a disk file system: tmpfs maps holes to the
# shared zero page and caches nothing.
fill_memory() { # DIR
  [[ ${FILL:-1} != 0 ]] || return 0
  mkdir -p "$1"
  local free_mib have_mib
  have_mib=$(($(stat -c %s "$1/fill" 2>/dev/null || echo 0) / 1048576))
  ((have_mib == 0)) || cat "$1/fill" >/dev/null
  free_mib=$(awk '/^MemFree:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
  if ((free_mib > 1024)); then
    truncate -s "$((have_mib + free_mib - 512))M" "$1/fill"
    dd if="$1/fill" of=/dev/null bs=1M skip="$have_mib" status=none
  fi
  sleep "${FILL_SETTLE:-2}"
}
drop_fill() { # DIR
  rm -f "$1"/fill "$1"/fill.*
}
