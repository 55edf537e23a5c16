"""Writes the PDF fixtures, whose outputs are committed; kept so they can be regenerated or changed.

- corpus/harbour-report.pdf: a real two-page PDF (Helvetica text, one /Title), written by hand.
- faults/restricted-aes.pdf: the same PDF AES-128 encrypted with an empty user password (a "copy-protected"
  PDF, which opens without a password). Writing it needs pypdf and the `cryptography` package.
"""

from __future__ import annotations

from pathlib import Path

TITLE = "Harbour Report"
PAGES = [
    [
        "Harbour Report",
        "The eastern breakwater was repaired in March with granite blocks.",
        "Ferry traffic grew by twelve percent during the summer season.",
    ],
    [
        "Dredging Plan",
        "The dredging of the inner basin starts in September and lasts six weeks.",
        "Night work is not allowed near the fish market.",
    ],
]


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[list[str]], title: str) -> bytes:
    """A valid PDF 1.4: catalog, page tree, one content stream per page, the standard Helvetica font."""
    n = len(pages)
    font_id, info_id = 3 + 2 * n, 4 + 2 * n
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: ("<< /Type /Pages /Kids [" + " ".join(f"{3 + 2 * i} 0 R" for i in range(n)) + f"] /Count {n} >>").encode(),
        font_id: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        info_id: f"<< /Title ({_escape(title)}) /Producer (Verbatim tests) >>".encode(),
    }
    for i, lines in enumerate(pages):
        page_id, content_id = 3 + 2 * i, 4 + 2 * i
        ops = "BT /F1 12 Tf 16 TL 72 720 Td " + " ".join(f"({_escape(line)}) Tj T*" for line in lines) + " ET"
        stream = ops.encode("latin-1")
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>"
        ).encode()
        objects[content_id] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, info_id, xref)
    return bytes(out)


def write_restricted_copy(source: Path, target: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    writer.write(target)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    plain = here / "corpus" / "harbour-report.pdf"
    plain.write_bytes(pdf_bytes(PAGES, TITLE))
    (here / "faults").mkdir(exist_ok=True)
    write_restricted_copy(plain, here / "faults" / "restricted-aes.pdf")
    print(f"wrote {plain} and faults/restricted-aes.pdf")
