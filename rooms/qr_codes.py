"""QR codes of invite links, rendered on request and never stored.

Error correction level M (15 % of the code may be damaged or dirty) and a quiet zone of four
modules, which phone cameras read from a poster at a few metres.
"""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg


def _code(url: str, border: int = 4) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=border)
    code.add_data(url)
    code.make(fit=True)
    return code


def qr_svg(url: str) -> str:
    """An SVG drawing that scales to any size (for pages and print)."""
    image = _code(url).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")


def qr_png(url: str, *, box_size: int = 12) -> bytes:
    """A PNG of about 500 px for a typical link, enough to print at 10 cm."""
    code = _code(url)
    code.box_size = box_size
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue()


def qr_text(url: str) -> str:
    """The QR code as text for a terminal (two rows per line of block characters)."""
    out = io.StringIO()
    _code(url, border=2).print_ascii(out=out, invert=True)
    return out.getvalue()
