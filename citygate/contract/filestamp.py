"""File-change detection: a stamp per file, compared to know when to re-read it.

Both sides re-read files that operators replace while the process runs (the inventory,
the CRL, certificates and keys), and both tell a change the same way.
"""

from __future__ import annotations

from pathlib import Path

# (inode, mtime in ns, size). The inode changes on an atomic replace (a new file renamed
# over the old one), which may keep the mtime and the size; the mtime (in ns, as fine as
# the file system keeps it) and the size catch a rewrite in place.
FileStamp = tuple[int, int, int]


def file_stamp(path: Path) -> FileStamp | None:
    """The stamp of ``path`` now, or None when it cannot be stat'ed (missing, no access)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
