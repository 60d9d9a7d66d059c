"""How a raster is named: a local path, or a URL or GDAL virtual path that GDAL reads over the network
or from inside another file; and GDAL's errors shortened to one line for messages."""

from __future__ import annotations

import os
import re
from typing import Any

_URL_PREFIXES = ("http://", "https://", "ftp://", "s3://", "gs://", "az://", "azure://", "oss://", "/vsi")


def _is_url(href: str) -> bool:
    """Whether ``href`` is a URL or GDAL virtual path (``/vsi...``), not a local file path."""
    return href.lower().startswith(_URL_PREFIXES)


def _one_line(err: BaseException) -> str:
    """``err``'s message on one line, at most 300 characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _vrt_source_names(ds: Any) -> list[str]:
    """The sources of VRT ``ds``, each once: GDAL's file list and :func:`_vrt_xml_sources` (local paths
    made absolute)."""
    try:
        listed = list(ds.files)
    except Exception:  # noqa: BLE001 - no file list: nothing to name
        return []
    if str(ds.name).lower().startswith("vrt://"):  # a connection string: its one file is the source itself
        names = listed
    else:
        names = [*listed[1:], *(_vrt_xml_sources(listed[0]) if listed else [])]
    return list(dict.fromkeys(os.path.abspath(n) if _plain_path(n) else n for n in names))


def _vrt_xml_sources(path: str) -> list[str]:
    """Every ``SourceFilename`` a local VRT file names, made absolute as GDAL does (``relativeToVRT``):
    GDAL's file list leaves out those of a ``<MaskBand>``.  [] for a VRT given as XML text or a URL."""
    import xml.etree.ElementTree as ET

    if _is_url(path) or not os.path.isfile(path):
        return []
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError):
        return []
    here = os.path.dirname(os.path.abspath(path))
    names = []
    for el in tree.iter("SourceFilename"):
        text = (el.text or "").strip()
        if text:
            relative = el.get("relativeToVRT", "0") == "1" and _plain_path(text) and not os.path.isabs(text)
            names.append(os.path.normpath(os.path.join(here, text)) if relative else text)
    return names


#: A GDAL connection string (``GTIFF_DIR:1:path``, ``vrt://path?bands=1``, ``GPKG:path:table``,
#: ``NETCDF:"path":var``): a driver prefix of two or more characters and a colon.
_CONNECTION = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")


def _plain_path(name: str) -> bool:
    """Whether a VRT source ``name`` is a file path (checked for existence), not a URL, a GDAL virtual
    path or a connection string (opened by GDAL, which gives its own reason when it cannot)."""
    return not _is_url(name) and not _CONNECTION.match(name)
