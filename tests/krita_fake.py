"""A small fake of Krita's scripting API for the plugin's host-adapter tests (not a test module).

It keeps what the adapter relies on and what the real Krita does (checked in tests/test_krita_e2e.py):
pixels in the layer's own depth with integer RGBA stored as B,G,R,A and float as R,G,B,A, image
coordinates, transparent outside a layer's pixels; ``Selection.pixelData`` as an 8-bit mask;
``addChildNode``/``remove`` undoable, ``setPixelData`` not; ``edit_undo``/``edit_redo`` act on the newest
step.
"""

from __future__ import annotations

import itertools

from anycost_client.regions import DEPTHS

_ids = itertools.count(1)


class QRect:
    def __init__(self, x: int, y: int, w: int, h: int):
        self._r = (x, y, w, h)

    def x(self) -> int:
        return self._r[0]

    def y(self) -> int:
        return self._r[1]

    def width(self) -> int:
        return self._r[2]

    def height(self) -> int:
        return self._r[3]


class FakeNode:
    def __init__(self, doc: FakeDocument, name: str, kind: str = "paintlayer", model: str | None = None,
                 depth: str | None = None, profile: str | None = None):
        self.doc = doc
        self._name = name
        self._type = kind
        self._model = model or doc.model
        self._depth = depth or doc.depth
        self._profile = profile or doc.profile
        self.bpp = 4 * DEPTHS.get(self._depth, 1) if self._model == "RGBA" else 2 * DEPTHS.get(self._depth, 1)
        self.pixels = bytearray(doc._w * doc._h * self.bpp)  # transparent
        self.parent: FakeNode | None = None
        self.children: list[FakeNode] = []
        self._locked = False
        self._uid = next(_ids)

    # the libkis API the plugin uses
    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return self._type

    def colorModel(self) -> str:
        return self._model

    def colorDepth(self) -> str:
        return self._depth

    def colorProfile(self) -> str:
        return self._profile

    def uniqueId(self) -> int:
        return self._uid

    def locked(self) -> bool:
        return self._locked

    def setLocked(self, value: bool) -> None:
        self._locked = bool(value)

    def parentNode(self) -> FakeNode | None:
        return self.parent

    def childNodes(self) -> list[FakeNode]:
        return list(self.children)

    def bounds(self) -> QRect:
        """The bounds of the pixels that are not fully transparent (colour bytes under alpha 0 do not count,
        as in Krita)."""
        w, h = self.doc._w, self.doc._h
        a = self.bpp // (2 if self._model != "RGBA" else 4)  # bytes of the alpha channel, the last one
        xs, ys = [], []
        for y in range(h):
            row = self.pixels[y * w * self.bpp:(y + 1) * w * self.bpp]
            hits = [x for x in range(w) if any(row[(x + 1) * self.bpp - a:(x + 1) * self.bpp])]
            if hits:
                ys.append(y)
                xs.extend(hits)
        if not ys:
            return QRect(0, 0, 0, 0)
        return QRect(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        out = bytearray(w * h * self.bpp)
        W, H = self.doc._w, self.doc._h
        for r in range(h):
            yy = y + r
            if not 0 <= yy < H:
                continue
            for c in range(w):
                xx = x + c
                if 0 <= xx < W:
                    s = (yy * W + xx) * self.bpp
                    d = (r * w + c) * self.bpp
                    out[d:d + self.bpp] = self.pixels[s:s + self.bpp]
        return bytes(out)

    def setPixelData(self, data: bytes, x: int, y: int, w: int, h: int) -> None:
        assert len(data) == w * h * self.bpp, "setPixelData: wrong byte count"
        W, H = self.doc._w, self.doc._h
        for r in range(h):
            for c in range(w):
                xx, yy = x + c, y + r
                if 0 <= xx < W and 0 <= yy < H:
                    s = (r * w + c) * self.bpp
                    d = (yy * W + xx) * self.bpp
                    self.pixels[d:d + self.bpp] = data[s:s + self.bpp]

    def addChildNode(self, child: FakeNode, above: FakeNode | None) -> bool:
        assert child is not None, "Krita crashes on None"
        idx = self.children.index(above) + 1 if above is not None else len(self.children)

        def do():
            self.children.insert(idx, child)
            child.parent = self

        def undo():
            self.children.remove(child)
            child.parent = None

        if self.doc.adding_is_undoable:
            self.doc._push(f"add {child._name}", do, undo)
        else:
            do()
            self.doc._modified = True
        return True

    def remove(self) -> bool:
        parent = self.parent
        if parent is None:
            return False
        idx = parent.children.index(self)

        def do():
            parent.children.remove(self)
            self.parent = None

        def undo():
            parent.children.insert(idx, self)
            self.parent = parent

        self.doc._push(f"remove {self._name}", do, undo)
        return True


class FakeSelection:
    def __init__(self, doc: FakeDocument, x: int, y: int, w: int, h: int):
        self.doc = doc
        self.mask = bytearray(doc._w * doc._h)
        for yy in range(y, y + h):
            self.mask[yy * doc._w + x: yy * doc._w + x + w] = b"\xff" * w
        self._r = (x, y, w, h)

    def x(self) -> int:
        return self._r[0]

    def y(self) -> int:
        return self._r[1]

    def width(self) -> int:
        return self._r[2]

    def height(self) -> int:
        return self._r[3]

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        W = self.doc._w
        out = bytearray(w * h)
        for r in range(h):
            for c in range(w):
                if 0 <= x + c < W and 0 <= y + r < self.doc._h:
                    out[r * w + c] = self.mask[(y + r) * W + x + c]
        return bytes(out)


class FakeDocument:
    def __init__(self, w: int, h: int, model: str = "RGBA", depth: str = "U8",
                 profile: str = "sRGB-elle-V2-srgbtrc.icc"):
        self._w, self._h = w, h
        self.model, self.depth, self.profile = model, depth, profile
        self.root = FakeNode(self, "root", "grouplayer")
        self.undo_stack: list[tuple[str, object, object]] = []
        self.redo_stack: list[tuple[str, object, object]] = []
        self.adding_is_undoable = True  # False: what a Krita whose addChildNode left no undo step would do
        self._selection: FakeSelection | None = None
        self._modified = False
        self.active: FakeNode | None = None
        self.refreshes = 0
        bg = FakeNode(self, "Background")
        self.root.children.append(bg)
        bg.parent = self.root
        self.active = bg

    def _push(self, what: str, do, undo) -> None:
        do()
        self.undo_stack.append((what, do, undo))
        self.redo_stack.clear()
        self._modified = True

    def undo(self) -> None:
        if self.undo_stack:
            entry = self.undo_stack.pop()
            entry[2]()
            self.redo_stack.append(entry)

    def redo(self) -> None:
        if self.redo_stack:
            entry = self.redo_stack.pop()
            entry[1]()
            self.undo_stack.append(entry)

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h

    def rootNode(self) -> FakeNode:
        return self.root

    def activeNode(self) -> FakeNode | None:
        return self.active

    def setActiveNode(self, node: FakeNode) -> None:
        self.active = node

    def selection(self) -> FakeSelection | None:
        return self._selection

    def select(self, x: int, y: int, w: int, h: int) -> None:
        self._selection = FakeSelection(self, x, y, w, h)

    def createNode(self, name: str, kind: str) -> FakeNode:
        return FakeNode(self, name, kind)

    def modified(self) -> bool:
        return self._modified

    def setModified(self, value: bool) -> None:
        self._modified = bool(value)

    def refreshProjection(self) -> None:
        self.refreshes += 1

    def waitForDone(self) -> None:
        pass

    def layer_names(self) -> list[str]:
        return [n.name() for n in self.root.children]


class FakeAction:
    def __init__(self, fn):
        self.fn = fn

    def trigger(self) -> None:
        self.fn()


class FakeKrita:
    def __init__(self, doc: FakeDocument):
        self.doc = doc

    def activeDocument(self) -> FakeDocument:
        return self.doc

    def action(self, name: str):
        return {"edit_undo": FakeAction(self.doc.undo), "edit_redo": FakeAction(self.doc.redo)}.get(name)
