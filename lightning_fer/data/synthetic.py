"""Procedurally drawn demo faces with known expressions, subjects and landmarks.

Each face is drawn from its 68 iBUG landmarks, so the landmarks are exact by construction. A
subject fixes the face shape, skin tone, feature spacing and hair; an expression moves brows,
eyelids and mouth (with per-image intensity noise, so classes overlap a little); pose, scale,
lighting, background and sensor noise vary per image. The images and a manifest CSV are written
to disk by :class:`~lightning_fer.data.sources.SyntheticSource`, so the demo runs through the same
manifest code path as real data.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Expression -> feature offsets (brow raise, brow slant (+ = inner ends up), eye opening, mouth
# corner lift (+ = up), mouth opening, mouth width factor, upper-lip raise, lip press, nose wrinkle).
EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": dict(raise_=0, slant=0, eye=1.0, corner=0, open_=0, width=1.0, lip_raise=0, press=0, wrinkle=0),
    "happy": dict(raise_=0.5, slant=0, eye=0.7, corner=7, open_=2.5, width=1.2, lip_raise=0, press=0, wrinkle=0),
    "sad": dict(raise_=1, slant=5, eye=0.75, corner=-6, open_=0, width=0.95, lip_raise=0, press=0.3, wrinkle=0),
    "surprise": dict(raise_=7, slant=0.5, eye=1.5, corner=0, open_=12, width=0.75, lip_raise=0, press=0, wrinkle=0),
    "fear": dict(raise_=4, slant=4, eye=1.45, corner=-2.5, open_=5, width=1.2, lip_raise=0, press=0, wrinkle=0),
    "disgust": dict(raise_=-3, slant=-1.5, eye=0.65, corner=-3, open_=1, width=1.0, lip_raise=5, press=0, wrinkle=1),
    "anger": dict(raise_=-4, slant=-6, eye=0.8, corner=-1, open_=0, width=0.85, lip_raise=0, press=1, wrinkle=0.3),
}


def _subject(rng: np.random.Generator) -> dict:
    skin = np.array([rng.uniform(90, 235), 0, 0])
    skin[1] = skin[0] * rng.uniform(0.72, 0.85)
    skin[2] = skin[0] * rng.uniform(0.55, 0.72)
    return dict(
        a=rng.uniform(33, 42),  # face half-width
        b=rng.uniform(44, 54),  # chin depth
        top=rng.uniform(46, 56),  # forehead height
        ex=rng.uniform(14.5, 19),  # eye half-spacing
        ey=rng.uniform(-14, -9),  # eye height
        ew=rng.uniform(6.5, 8.5),  # eye half-width
        ny=rng.uniform(9, 14),  # nose tip
        my=rng.uniform(24, 30),  # mouth centre
        mw=rng.uniform(11, 15),  # mouth half-width
        lips=rng.uniform(2, 4),  # lip thickness
        brow=rng.uniform(1.8, 3.2),  # brow thickness
        skin=skin,
        hair=rng.uniform(10, 120, size=3) * rng.uniform(0.3, 1.0),
        hair_len=rng.uniform(0, 1),
        lip=np.array([rng.uniform(120, 200), rng.uniform(50, 90), rng.uniform(60, 100)]),
        iris=rng.uniform(20, 120, size=3),
    )


def face_points(subject: dict, expr: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """The 68 landmarks of a face in its own frame (centre 0, y down), and its outline."""
    s, e = subject, expr
    pts = np.zeros((68, 2), dtype=np.float64)
    # Jaw 0-16: from the image-left ear, round the chin, to the image-right ear.
    for i in range(17):
        t = math.pi - i * math.pi / 16
        pts[i] = (s["a"] * math.cos(t), -4 + s["b"] * math.sin(t) ** 0.9)
    # Brows 17-21 (image left, outer -> inner) and 22-26 (inner -> outer).
    brow_y = s["ey"] - 9 - e["raise_"]
    for side, idx in ((-1, range(17, 22)), (1, range(22, 27))):
        for j, i in enumerate(idx):
            u = (j / 4) * 2 - 1  # -1 .. 1 left to right
            x = side * s["ex"] + u * 11
            inner = (1 - u) / 2 if side == -1 else (1 + u) / 2  # 1 at the inner end
            y = brow_y - 2.5 * (1 - u * u) - e["slant"] * (inner - 0.5)
            pts[i] = (x, y)
    # Nose bridge 27-30 and bottom 31-35.
    for j, i in enumerate(range(27, 31)):
        pts[i] = (0, s["ey"] + (s["ny"] - s["ey"]) * j / 3)
    wr = 1.5 * e["wrinkle"]
    for j, i in enumerate(range(31, 36)):
        u = j / 2 - 1
        pts[i] = (u * 7.5, s["ny"] + 3.5 - 1.5 * abs(u) - wr)
    # Eyes 36-41 and 42-47: corner, two upper lid points, corner, two lower lid points.
    for cx, base in ((-s["ex"], 36), (s["ex"], 42)):
        cy, w = s["ey"], s["ew"]
        up, lo = 3.6 * e["eye"], 2.6 * e["eye"]
        ring = [(cx - w, cy), (cx - w / 3, cy - up), (cx + w / 3, cy - up), (cx + w, cy),
                (cx + w / 3, cy + lo), (cx - w / 3, cy + lo)]
        pts[base : base + 6] = ring
    # Mouth: outer 48-59, inner 60-67, on a curve whose corners lift with a smile.
    mw = s["mw"] * e["width"]
    my = s["my"]
    thick = s["lips"] * (1 - 0.6 * e["press"])
    op = e["open_"]

    def curve(x: float) -> float:
        return my - e["corner"] * (x / mw) ** 2

    def raise_(x: float) -> float:  # disgust lifts the upper lip, a little more on one side
        return e["lip_raise"] * max(0.0, 1 - ((x - 0.25 * mw) / mw) ** 2)

    xs_up = [-1, -0.6, -0.25, 0, 0.25, 0.6, 1]
    for j, u in enumerate(xs_up):  # 48..54
        x = u * mw
        pts[48 + j] = (x, curve(x) - op / 2 - thick * (1 - u * u) - raise_(x))
    for j, u in enumerate([0.6, 0.25, 0, -0.25, -0.6]):  # 55..59, right to left
        x = u * mw
        pts[55 + j] = (x, curve(x) + op / 2 + 1.3 * thick * (1 - u * u))
    for j, u in enumerate([-0.85, -0.3, 0, 0.3, 0.85]):  # 60..64
        x = u * mw
        pts[60 + j] = (x, curve(x) - op / 2 * (1 - u * u) - raise_(x) * 0.7)
    for j, u in enumerate([0.3, 0, -0.3]):  # 65..67
        x = u * mw
        pts[65 + j] = (x, curve(x) + op / 2 * (1 - u * u))
    # The outline: jaw plus a forehead arc (not landmarks).
    arc = [(s["a"] * math.cos(t), -4 - s["top"] * math.sin(t)) for t in np.linspace(0.15, math.pi - 0.15, 15)]
    outline = np.vstack([pts[:17], np.array(arc)])
    return pts, outline


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = (np.cos(ang) * xx + np.sin(ang) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    for _ in range(rng.integers(2, 6)):  # clutter
        center = tuple(int(v) for v in rng.uniform(0, size, 2))
        axes = tuple(int(v) for v in rng.uniform(size / 12, size / 3, 2))
        cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 255, 3).tolist(), -1)
    return img


def draw_face(
    subject: dict, expression: str, rng: np.random.Generator, size: int = 128, intensity: float | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """Draw one face.

    Returns:
        ``(image [size, size, 3] uint8 RGB, landmarks [68, 2] float32, face box (x, y, w, h))``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> img, pts, box = draw_face(_subject(rng), "happy", rng, size=64)
        >>> img.shape, pts.shape
        ((64, 64, 3), (68, 2))
    """
    k = intensity if intensity is not None else rng.uniform(0.55, 1.2)
    expr = {name: v * k if name not in ("eye", "width") else 1 + (v - 1) * k for name, v in EXPRESSIONS[expression].items()}
    for name, sd in (("raise_", 1.2), ("slant", 1.2), ("corner", 1.2), ("open_", 0.8), ("eye", 0.08)):
        expr[name] += rng.normal(0, sd)
    expr["open_"] = max(expr["open_"], 0.0)
    expr["eye"] = max(expr["eye"], 0.35)
    pts, outline = face_points(subject, expr)
    # Pose: in-plane rotation, scale, translation (the face frame is about 100 units tall).
    scale = size / 100 * rng.uniform(0.62, 0.82)
    theta = math.radians(rng.uniform(-12, 12))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) * scale
    shift = np.array([size / 2, size / 2 + 0.02 * size]) + rng.uniform(-0.08, 0.08, 2) * size

    def tf(p: np.ndarray) -> np.ndarray:
        return p @ rot.T + shift

    img = _background(rng, size)
    P = tf(pts)
    Q = tf(outline)  # the face outline
    # Lighting: a gradient across the face and an overall brightness.
    gain = rng.uniform(0.7, 1.2)
    skin = np.clip(subject["skin"] * gain, 0, 255)
    sh = 16  # fixed-point shift for sub-pixel anti-aliased drawing

    def poly(points, color, closed=True, fill=False, thick=1.0):
        q = np.round(points * (1 << sh)).astype(np.int32).reshape(-1, 1, 2)
        if fill:
            cv2.fillPoly(img, [q], color, cv2.LINE_AA, shift=sh)
        else:
            cv2.polylines(img, [q], closed, color, max(1, int(round(thick * scale))), cv2.LINE_AA, shift=sh)

    hair = subject["hair"].tolist()
    if subject["hair_len"] > 0.3:
        back = tf(np.array([(subject["a"] * 1.25 * math.cos(t), -4 + 70 * subject["hair_len"] * math.sin(t) ** 0.5)
                            for t in np.linspace(0, math.pi, 20)] +
                           [(subject["a"] * 1.2 * math.cos(t), -4 - (subject["top"] + 6) * math.sin(t))
                            for t in np.linspace(math.pi, 0, 20)]))
        poly(back, hair, fill=True)
    poly(Q, skin.tolist(), fill=True)
    cap = tf(np.array([(subject["a"] * 1.05 * math.cos(t), -4 - (subject["top"] + 4) * math.sin(t))
                       for t in np.linspace(0.05, math.pi - 0.05, 20)] +
                      [(subject["a"] * 0.9 * math.cos(t), -4 - subject["top"] * 0.75 * math.sin(t))
                       for t in np.linspace(math.pi - 0.2, 0.2, 20)]))
    poly(cap, hair, fill=True)
    dark = (skin * 0.55).tolist()
    # Eyes: white, iris, lids.
    for base in (36, 42):
        eye = P[base : base + 6]
        poly(eye, [235, 235, 230], fill=True)
        c = eye.mean(0)
        r = max(1, int(round(2.6 * scale * min(1.0, 0.5 + 0.5 * expr["eye"]))))
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(eye).astype(np.int32)], 1)
        iris = img.copy()
        cv2.circle(iris, (int(round(c[0])), int(round(c[1]))), r, subject["iris"].tolist(), -1, cv2.LINE_AA)
        img[mask > 0] = iris[mask > 0]
        poly(eye, (skin * 0.35).tolist(), thick=0.9)
    # Brows.
    for idx in (slice(17, 22), slice(22, 27)):
        poly(P[idx], (subject["hair"] * 0.6).tolist(), closed=False, thick=subject["brow"])
    # Nose.
    poly(P[27:31], dark, closed=False, thick=0.8)
    poly(P[31:36], dark, closed=False, thick=1.0)
    if expr["wrinkle"] > 0.3:  # disgust: wrinkles across the bridge
        for dy in (0.3, 0.5):
            y = pts[27, 1] + (pts[30, 1] - pts[27, 1]) * dy
            poly(tf(np.array([[-5, y], [0, y - 1.5], [5, y]])), dark, closed=False, thick=0.7)
    # Mouth: lips, then the opening.
    outer = P[48:60]
    poly(outer, (subject["lip"] * gain).clip(0, 255).tolist(), fill=True)
    if expr["open_"] > 1.0:
        poly(P[60:68][[0, 1, 2, 3, 4, 5, 6, 7]], [40, 20, 25], fill=True)
        if expression == "happy":  # teeth
            poly(P[[60, 61, 62, 63, 64]], [240, 240, 235], closed=False, thick=1.2)
    poly(outer, (subject["lip"] * 0.5).tolist(), thick=0.6)
    # Light gradient, blur and noise.
    yy, xx = np.mgrid[0:size, 0:size] / size
    ang = rng.uniform(0, 2 * math.pi)
    light = 1 + rng.uniform(0, 0.35) * (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)) * 2
    img = img * light[..., None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9))
    img = img + rng.normal(0, rng.uniform(2, 7), img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    x0, y0 = Q.min(0)
    x1, y1 = Q.max(0)
    return img, P.astype(np.float32), (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def affectnet_layout(root, n: int, image_size: int = 96, faces: int = 64, seed: int = 0,
                     validation_share: float = 0.02) -> dict:
    """Write ``n`` images in AffectNet's exact layout under ``root``: ``Manually_Annotated_Images/
    <dir>/<file>.jpg`` (distinct bytes), and ``Manually_Annotated_file_lists/training.csv`` and
    ``validation.csv`` (all nine columns, the face box, 68 landmarks, expressions 0-6), for
    measuring the library at AffectNet's scale (``benchmarks/scale.py``). ``faces`` drawn faces
    are reused with a per-image stamp of pixels, so that writing a million files stays fast.

    Returns ``{"training": rows, "validation": rows, "seconds": s}``.

    Example:
        >>> import tempfile
        >>> affectnet_layout(tempfile.mkdtemp(), 20, image_size=48, faces=2)["training"]
        19
    """
    import csv
    import time
    from pathlib import Path

    from lightning_fer.data.sources.affectnet import AFFECTNET_COLUMNS

    t0 = time.perf_counter()
    root = Path(root)
    images, lists = root / "Manually_Annotated_Images", root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(EXPRESSIONS)
    drawn = []
    for k in range(faces):
        expr = names[k % len(names)]
        img, pts, box = draw_face(_subject(rng), expr, rng, image_size)
        lm = ";".join(f"{v:.2f}" for v in pts.reshape(-1))
        drawn.append((cv2.cvtColor(img, cv2.COLOR_RGB2BGR), lm, box, names.index(expr)))
    n_val = max(1, int(round(n * validation_share))) if n > 1 else 0
    files = {"training": open(lists / "training.csv", "w", newline=""),
             "validation": open(lists / "validation.csv", "w", newline="")}
    writers = {k: csv.writer(f) for k, f in files.items()}
    for w in writers.values():
        w.writerow(AFFECTNET_COLUMNS)
    made_dirs: set[int] = set()
    try:
        for i in range(n):
            img, lm, (x, y, bw, bh), label = drawn[i % faces]
            bits = np.unpackbits(np.frombuffer(int(i).to_bytes(8, "little"), np.uint8)).reshape(8, 8)
            img = img.copy()
            img[:8, :8] = (bits * 255)[..., None]  # i in black and white bits: distinct bytes, even as JPEG
            d = i // 1000
            if d not in made_dirs:
                (images / str(d)).mkdir(parents=True, exist_ok=True)
                made_dirs.add(d)
            rel = f"{d}/{i:08d}_{seed}.jpg"
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            (images / rel).write_bytes(buf.tobytes())
            split = "validation" if i >= n - n_val else "training"
            writers[split].writerow([rel, f"{x:.1f}", f"{y:.1f}", f"{bw:.1f}", f"{bh:.1f}", lm, label,
                                     f"{rng.uniform(-1, 1):.3f}", f"{rng.uniform(-1, 1):.3f}"])
    finally:
        for f in files.values():
            f.close()
    return {"training": n - n_val, "validation": n_val, "seconds": time.perf_counter() - t0}
