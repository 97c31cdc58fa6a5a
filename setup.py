"""Ships the book's pages in the wheel, so that ``diffred chapters`` and ``diffred run`` work
after ``pip install`` from a built wheel, outside any checkout.

The book's sources stay where the user placed them (``_config.yml``, ``_toc.yml``,
``intro.md``, ``chapters/``); a non-editable build copies them into ``diffred/_book/``, which
:data:`diffred.core.paths.BOOK_DIR` points to when there is no checkout.  Everything else about
the package is declared in ``pyproject.toml``.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BOOK = ("_config.yml", "_toc.yml", "intro.md", "chapters")


class BuildWithBook(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):     # an editable install reads the checkout
            return
        target = Path(self.build_lib) / "diffred" / "_book"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in BOOK:
            source = Path(name)
            if source.is_dir():
                shutil.copytree(source, target / name,
                                ignore=shutil.ignore_patterns("*.ipynb", ".*", "__pycache__"))
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithBook})
