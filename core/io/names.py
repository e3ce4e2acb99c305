"""File names that are not UTF-8 (e.g. Latin-1 ``café.tif`` on a UTF-8 system), made readable for GDAL.

Python hands such a name over with surrogate escapes (``'caf\\udce9.tif'``), which rasterio and
pyogrio cannot encode for GDAL. :class:`NameAliases` gives each such file a UTF-8 alias: a symbolic
link in a private folder of the temporary directory, named as the file is shown (each byte that is
not UTF-8 as U+FFFD, ``caf�.tif``), with links to its side files (``.ovr``, ``.aux.xml``, ``.msk``,
a shapefile's ``.shx``, ``.dbf``, ``.prj``...). The alias of a file is the same on every run (its
folder is named by a hash of the file's path), so a resumed run finds the same job.
:meth:`NameAliases.shown` puts the file's own name (shown with U+FFFD) back into messages.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
import tempfile
from typing import Any, Dict, List, Optional

from .atomic import remove_if_there

#: What a byte that is not UTF-8 looks like in messages, tables and alias names.
REPLACEMENT = "\ufffd"


def undecodable(text: str) -> bool:
    """True if ``text`` holds surrogate escapes (bytes that were not UTF-8), which GDAL cannot be given.

    >>> undecodable("caf\\udce9.tif"), undecodable("café.tif")
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def shown(text: str) -> str:
    """``text`` with each undecodable byte shown as U+FFFD (printable, and valid UTF-8).

    >>> shown("caf\\udce9.tif") == "caf\\ufffd.tif"
    True
    """
    return "".join(REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in text)


def alias_root() -> str:
    """The private folder holding the aliases (``tilewise-names-<uid>`` in the temporary directory);
    a new private folder if that one is not this user's alone."""
    uid = getattr(os, "getuid", lambda: 0)()
    root = os.path.join(tempfile.gettempdir(), f"tilewise-names-{uid}")
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        st = os.lstat(root)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077:
            return root
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="tilewise-names-")   # someone else's, or unusable: not to be trusted


class NameAliases:
    """UTF-8 aliases of files whose names are not UTF-8.

    >>> NameAliases().alias("/data/scene.tif")       # a UTF-8 name is its own alias
    '/data/scene.tif'
    """

    def __init__(self, root: Optional[str] = None) -> None:
        self._root = root
        self.aliases: Dict[str, str] = {}        # alias -> the original path (with surrogate escapes)

    @property
    def root(self) -> str:
        if self._root is None:
            self._root = alias_root()
        return self._root

    def alias(self, path: str) -> str:
        """A path GDAL can open for ``path``: itself if UTF-8 or missing (a missing file is reported as
        such), else a link named as ``path`` is shown, in a folder of its own."""
        if not undecodable(path) or not os.path.lexists(path):
            return path
        real = os.fsencode(os.path.abspath(path))
        folder = os.path.join(self.root, hashlib.sha256(real).hexdigest()[:16])
        os.makedirs(folder, mode=0o700, exist_ok=True)
        parent, name = os.path.split(real)
        wanted = {name: real}
        if os.path.isfile(real):
            stem = os.path.splitext(name)[0] + b"."
            for entry in os.listdir(parent or b"."):
                if entry != name and entry.startswith(stem):       # its side files
                    wanted[entry] = os.path.join(parent, entry)
        links = {shown(os.fsdecode(n)): target for n, target in wanted.items()}
        links[shown(os.fsdecode(name))] = real             # the file itself, whatever a side file shows as
        for entry in os.listdir(folder):                          # side files gone since the last run
            if entry not in links:
                remove_if_there(os.path.join(folder, entry))
        for link_name, target in links.items():
            _link(target, os.path.join(folder, link_name))
        alias = os.path.join(folder, shown(os.fsdecode(name)))
        self.aliases[alias] = path
        return alias

    def alias_text(self, text: str) -> str:
        """``text`` with the file it names aliased: a path, or ``path:band``."""
        if not undecodable(text):
            return text
        head, sep, tail = text.rpartition(":")
        if sep and tail.isdigit() and head and not os.path.lexists(text) and os.path.lexists(head):
            return f"{self.alias(head)}:{tail}"
        return self.alias(text)

    def alias_values(self, value: Any, expand: bool = False) -> Any:
        """Every path in ``value`` (text, or lists, tuples and dicts of them) aliased; ``expand``: glob
        patterns are expanded first (as the command would, later)."""
        if isinstance(value, str):
            return self.alias_text(value)
        if isinstance(value, (list, tuple)):
            items: List[Any] = list(value)
            if expand:
                items = [m for v in items for m in (expand_pattern(v) if isinstance(v, str) else [v])]
            return type(value)(self.alias_values(v) for v in items)
        if isinstance(value, dict):
            return {k: self.alias_values(v) for k, v in value.items()}
        return value

    def shown(self, text: str) -> str:
        """``text`` (a message) with each alias replaced by its file's own path, shown."""
        for alias, original in self.aliases.items():
            text = text.replace(alias, original)
        return shown(text)


def is_pattern(path: Any) -> bool:
    """True for a glob pattern: text with ``*``, ``?`` or ``[`` that is not a URL or GDAL network path (a
    URL's ``?`` starts its query) and not a path that exists (a file may be called ``a[1].tif``).

    >>> is_pattern("scenes/S3*.SEN3"), is_pattern("https://host/a.tif?x=1"), is_pattern("a.tif")
    (True, False, False)
    """
    from .sources import is_remote
    return isinstance(path, str) and any(c in path for c in "*?[") and not is_remote(path) and \
        not os.path.exists(path)


def expand_pattern(path: str, recursive: bool = False) -> List[str]:
    """A glob pattern's matches (sorted; ``recursive``: ``**`` across folders), or ``[path]`` for a pattern
    that matches nothing and for anything else (:func:`is_pattern`)."""
    return (sorted(glob.glob(path, recursive=recursive)) if is_pattern(path) else []) or [path]


def _link(target: bytes, link: str) -> None:
    """``link`` -> ``target``, replaced atomically if it pointed elsewhere (another run may read it)."""
    try:
        if os.fsencode(os.readlink(link)) == target:
            return
    except OSError:
        pass
    spare = f"{link}.{os.getpid()}.new"
    remove_if_there(spare)
    os.symlink(target, os.fsencode(spare))
    os.replace(spare, link)
