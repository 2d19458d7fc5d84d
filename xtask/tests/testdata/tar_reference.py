"""The reference reader of the archive differential tests (xtask/tests/archives.rs).

Container engines unpack layers with Go's archive/tar; Python's tarfile agreed
with Go on every case tried, so it stands in for Go here. For each file named
on the command line, prints one JSON line: {"entries": [...]} with what tarfile
reads, or {"error": "..."} when it refuses the file.
"""
import hashlib
import json
import sys
import tarfile

KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.LNKTYPE: "hardlink",
    tarfile.SYMTYPE: "symlink",
    tarfile.CHRTYPE: "char device",
    tarfile.BLKTYPE: "block device",
    tarfile.DIRTYPE: "directory",
    tarfile.FIFOTYPE: "fifo",
}


def text(value):
    # Names tarfile could not decode come back with surrogates: shown replaced.
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read(path):
    entries = []
    try:
        with tarfile.open(path, mode="r:*") as archive:
            while True:
                member = archive.next()
                if member is None:
                    break
                kind = KINDS.get(member.type, "other " + repr(member.type))
                entry = {
                    "name": text(member.name),
                    "kind": kind,
                    "mode": member.mode & 0o7777,
                    "uid": member.uid,
                    "gid": member.gid,
                    "mtime": int(member.mtime),
                    "size": member.size if member.isreg() else 0,
                    "link": text(member.linkname) if member.issym() or member.islnk() else None,
                    "sha256": None,
                }
                if member.isreg():
                    data = archive.extractfile(member).read()
                    if len(data) != member.size:
                        raise ValueError("short content")
                    entry["sha256"] = hashlib.sha256(data).hexdigest()
                entries.append(entry)
    except Exception as error:  # every refusal is an answer here
        return {"error": "%s: %s" % (type(error).__name__, error)}
    return {"entries": entries}


for name in sys.argv[1:]:
    print(json.dumps(read(name), sort_keys=True))
