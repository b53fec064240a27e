"""A documents folder of every kind, bad files included, built once per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.documents import files

PROSE = ("Annual leave is granted at twenty-five days per calendar year for every employee on a permanent contract. "
         "Leave not taken by the end of March lapses unless the manager has approved a carry-over in writing. ")
TABLE = [("Grade", "Days carried over"), ("A", "5"), ("B", "10")]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "documents"
    (root / "policies").mkdir(parents=True)
    (root / "wiki").mkdir()
    files.pdf(root / "policies" / "leave.pdf", [PROSE * 8, "Carry-over limits by grade:"], title="Leave policy",
              table=TABLE)
    files.docx(root / "contract.docx", "Supplier contract",
               [(1, "Payment", "Consideration means the payment of 100 EUR per delivery."),
                (2, "Late payment", "Interest of five percent a year applies to late payments.")],
               table=[("Term", "Value"), ("Net", "30 days")])
    files.html(root / "wiki" / "setup.html", "Setup guide",
               [(1, "Installing", "Run the installer as an administrator."), (2, "On Linux", "Use the apt package.")],
               table=[("System", "Command"), ("Debian", "apt install tool")])
    files.markdown(root / "wiki" / "faq.md", [(1, "FAQ", "Questions people ask."), (2, "Accounts", "How to log in."),
                                              (3, "Passwords", "Reset it from the login page."),
                                              (2, "Billing", "Invoices arrive monthly.")])
    (root / "policies" / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a PDF body\n%%EOF\n")
    files.image_only_pdf(root / "policies" / "scanned.pdf")
    (root / "wiki" / "diagram.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / ".hidden.md").write_text("# ignored\n\nnever read\n")
    return root
