"""Decoder error messages: one path-free line for an image that a decoder (libtiff and GDAL through
rasterio, Pillow) stopped on, in words the sender of the file can act on.

Decoder errors chain (rasterio's "Read failed. See previous exception for details." raised from
libtiff's own words), carry program internals (``<_io.BytesIO object at 0x...>``, ``/vsimem/``
file names) and, from a decoder's Python code tripping on missing bytes, messages that say
nothing about the file (``struct.error: unpack_from requires a buffer ...``).
:func:`decoder_cause` gives the innermost meaningful message; :func:`decode_error_message` the
whole line: what cannot be decoded, what that means (:data:`_CAUSES`) and a fix.  Used for
uploads (:mod:`rsir_stac.upload`) and query images (:mod:`rsir_stac.tiling.query`).
"""

from __future__ import annotations

import re
import struct

_REEXPORT = "re-export it as PNG or GeoTIFF (e.g. gdal_translate -of GTiff -co COMPRESS=DEFLATE in.tif out.tif)"
#: Program internals that decoder messages carry (``<_io.BytesIO object at 0x...>``, memory file names).
_INTERNALS = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>|[0-9a-f]{8}-[0-9a-f-]{27}\.tif")


def _short(err: BaseException) -> str:
    """A one-line, path-free description of a decoder error."""
    text = " ".join(str(err).split()) or type(err).__name__
    text = _INTERNALS.sub("", text.replace("/vsimem/", "")).strip(" :") or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


#: Errors of a decoder's Python code (Pillow's ``struct.unpack_from`` on a cut PNG chunk: "unpack_from
#: requires a buffer of at least 4 bytes ...") whose messages say nothing to the sender of the file.
_PYTHON_INTERNAL = (struct.error, IndexError, KeyError, TypeError, AttributeError, ZeroDivisionError)


def _causes(err: BaseException) -> list[str]:
    """The messages of ``err`` and the errors it was raised from (outermost first), each path-free."""
    out: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen and len(out) < 16:
        seen.add(id(cur))
        if isinstance(cur, _PYTHON_INTERNAL):  # a decoder's Python code tripping on missing bytes: not words
            cur = cur.__cause__ or cur.__context__
            continue
        text = _short(cur)
        text = re.sub(r"^.*?IReadBlock failed at X offset \d+, Y offset \d+:\s*", "", text)
        text = re.sub(r"^(\S*\.tif[^:]*|[0-9a-f]{8}-[0-9a-f-]{27}/?):\s*", "", text).strip(" :")
        if text and text not in out:
            out.append(text)
        cur = cur.__cause__ or cur.__context__
    return out


#: Decoder messages (libtiff, GDAL, Pillow) -> what is wrong with the file, in words.
_CAUSES = (
    (re.compile(r"codec|compression|not implemented|not supported|unsupported", re.I),
     "it uses a compression or sample layout that cannot be decoded here"),
    (re.compile(r"truncat|not enough data|short|cannot read|premature|unexpected end|end of (file|data)|"
                r"read error|beyond|past the end|strile|seek", re.I),
     "its pixel data is truncated or cut short"),
)


def decoder_cause(err: BaseException) -> str:
    """The innermost, path-free message of a decoder error: libtiff's or the codec's own words rather
    than rasterio's "Read failed. See previous exception for details."."""
    causes = [c for c in _causes(err) if not c.startswith("Read failed")]
    if causes:
        return causes[-1]
    return "the file is damaged or truncated" if _internal(err) else type(err).__name__


def decode_error_message(what: str, err: BaseException) -> str:
    """One line for an image that ``err`` stopped a decoder on: ``what`` (e.g. "the uploaded TIFF file"),
    the decoder's own innermost message (not GDAL's "Read failed. See previous exception for details."),
    what it means and a fix."""
    causes = [c for c in _causes(err) if not c.startswith("Read failed")]
    internal = _internal(err)
    meaning = next((m for pattern, m in _CAUSES if any(pattern.search(c) for c in causes)),
                   "it is damaged or truncated" if internal else "it is corrupt or not a valid image")
    detail = f" ({causes[-1]})" if causes else "" if internal else f" ({type(err).__name__})"
    return f"{what} cannot be decoded: {meaning}{detail}; {_REEXPORT}"


def _internal(err: BaseException) -> bool:
    """Whether ``err`` or an error it came from is one of :data:`_PYTHON_INTERNAL`."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, _PYTHON_INTERNAL):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


__all__ = ["decode_error_message", "decoder_cause"]
