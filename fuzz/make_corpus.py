#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/): small valid files of each format,
made here from scratch (no file copied from elsewhere), so the fuzzer starts from inputs that pass the
checks and mutates from there. Usage: /usr/bin/python3 fuzz/make_corpus.py
"""
import gzip
import io
import json
import os
import struct
import sys
import zlib

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def idx_images(n, h, w):
    return struct.pack(">IIII", 2051, n, h, w) + bytes((i * 37) % 256 for i in range(n * h * w))


def idx_labels(n, k):
    return struct.pack(">II", 2049, n) + bytes(i % k for i in range(n))


def png(width, height, color_type, rows):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bmp(width, height):
    row = bytes((x * 40) % 256 for x in range(width * 3))
    row += b"\x00" * ((4 - len(row) % 4) % 4)
    pixels = row * height
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def tga(width, height):
    header = struct.pack("<BBBHHBHHHHBB", 0, 0, 3, 0, 0, 0, 0, 0, width, height, 8, 0)
    return header + bytes((i * 11) % 256 for i in range(width * height))


def gif(width, height):
    # A 2-colour GIF with one uncompressed-ish LZW block (minimum code size 2).
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00\x3b")


def safetensors(tensors, metadata):
    header, body = {}, b""
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + body


def npy(array):
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def main():
    # IDX: images and labels, raw and gzip-compressed.
    put("idx", "images.idx", idx_images(3, 4, 4))
    put("idx", "labels.idx", idx_labels(5, 3))
    put("idx", "images.gz", gzip.compress(idx_images(2, 5, 3), mtime=0))
    put("idx", "labels.gz", gzip.compress(idx_labels(4, 2), mtime=0))

    # Model files: a bare model, one with softreg's metadata and a recipe, one with extra tensors.
    W = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    b = np.array([0.5, -0.5], dtype=np.float32)
    put("safetensors", "bare.safetensors", safetensors({"weight": W, "bias": b}, {}))
    meta = {"format": "softreg", "format_version": "1", "class_names": json.dumps(["a", "b"]), "height": "2",
            "width": "2", "input": "images", "dtype": "u8", "pixel_scale": "x/255"}
    put("safetensors", "softreg.safetensors", safetensors({"weight": W, "bias": b}, meta))
    # A checkpoint as training writes it (recipe, trainer state, Adam's moments): from softreg's own
    # writer when the Python package is built (PYTHONPATH=build/python).
    try:
        import softreg
    except ImportError:
        print("softreg's Python package not found: no checkpoint seed (PYTHONPATH=build/python)")
    else:
        import tempfile
        X = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 0, 0]], dtype=np.float32)
        model = softreg.SoftmaxRegression(optimizer="adam", lr=0.01, epochs=2, threads=1).fit(X, [0, 1, 0])
        with tempfile.TemporaryDirectory() as tmp:
            model.save(os.path.join(tmp, "m.safetensors"))
            with open(os.path.join(tmp, "m.safetensors"), "rb") as f:
                put("safetensors", "checkpoint.safetensors", f.read())

    # Images of every format stb reads, grey and colour.
    put("image", "grey.png", png(3, 2, 0, [b"\x00\x80\xff", b"\x10\x20\x30"]))
    put("image", "rgba.png", png(2, 2, 6, [b"\xff\x00\x00\x80\x00\xff\x00\xff", b"\x00\x00\xff\x00\x10\x20\x30\x40"]))
    put("image", "rgb.png", png(2, 1, 2, [b"\x01\x02\x03\x04\x05\x06"]))
    put("image", "grey.pgm", b"P5\n3 2\n255\n" + bytes(range(0, 60, 10)))
    put("image", "ascii.pgm", b"P2\n2 2\n15\n0 5\n10 15\n")
    put("image", "colour.ppm", b"P6\n2 1\n255\n" + bytes(range(6)))
    put("image", "colour.bmp", bmp(3, 2))
    put("image", "grey.tga", tga(3, 3))
    put("image", "tiny.gif", gif(2, 2))
    try:  # WebP through Pillow where it is installed (Debian's python3-pil); the seeds are committed
        from PIL import Image
        for name, options in (("lossless.webp", {"lossless": True}), ("lossy.webp", {"quality": 50})):
            out = io.BytesIO()
            pixels = np.arange(48, dtype=np.uint8).reshape(3, 4, 4) * 5
            Image.fromarray(pixels, "RGBA").save(out, "WEBP", **options)
            put("image", name, out.getvalue())
        # JPEG: baseline grey, progressive colour, and one with an EXIF orientation (a phone's portrait
        # photo), whose APP1 segment the loader reads to turn the image upright.
        grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L")
        colour = Image.fromarray(np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3), "RGB")
        for name, image, options in (("grey.jpg", grey, {"quality": 75}),
                                     ("progressive.jpg", colour, {"quality": 60, "progressive": True})):
            out = io.BytesIO()
            image.save(out, "JPEG", **options)
            put("image", name, out.getvalue())
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
        out = io.BytesIO()
        colour.save(out, "JPEG", quality=60, exif=exif.tobytes())
        put("image", "exif_rotated.jpg", out.getvalue())
    except ImportError:
        print("Pillow not found: no WebP or JPEG seeds", file=sys.stderr)

    # NPY: feature matrices and label vectors of each supported dtype.
    put("npy", "f4.npy", npy(np.arange(6, dtype=np.float32).reshape(2, 3)))
    put("npy", "f8.npy", npy(np.linspace(0, 1, 8).reshape(4, 2)))
    put("npy", "u1.npy", npy(np.arange(12, dtype=np.uint8).reshape(3, 4)))
    put("npy", "f2.npy", npy(np.array([[-2.5, 6e-8], [65504, 0]], dtype=np.float16)))
    put("npy", "i4.npy", npy(np.array([[-3, 70000]], dtype=np.int32)))
    put("npy", "b1.npy", npy(np.array([[True, False]])))
    put("npy", "labels_i8.npy", npy(np.array([0, 2, 1, 2], dtype=np.int64)))
    put("npy", "labels_f8.npy", npy(np.array([1.0, 0.0, 2.0])))
    put("npy", "labels_u2.npy", npy(np.array([3, 1], dtype=np.uint16)))
    put("npy", "labels_str.npy", npy(np.array(["cat", "dog", "cat"])))
    put("npy", "labels_col.npy", npy(np.array([[1], [0]], dtype=np.int32)))
    # Big-endian arrays, read in their byte order.
    put("npy", "f4_big.npy", npy(np.array([[1.5, -2], [3e7, 0]], dtype=">f4")))
    put("npy", "labels_str_big.npy", npy(np.array(["cat", "\u00e9t\u00e9"], dtype=">U3")))

    # NPZ: stored and deflated archives with the four keys.
    for name, save in (("stored.npz", np.savez), ("deflated.npz", np.savez_compressed)):
        out = io.BytesIO()
        save(out, x_train=np.eye(3, dtype=np.float32), y_train=np.array([0, 1, 2]),
             x_test=np.ones((2, 3), dtype=np.float32), y_test=np.array([1, 0]))
        put("npz", name, out.getvalue())

    # CSV: the first byte picks the label column (0: first, 1: index 1, 2: by name "label").
    put("csv", "numeric.csv", b"\x00" + b"0,0.5,1.5\n1,2.5,3.5\n0,1e-3,-4\n")
    put("csv", "header.csv", b"\x02" + b"x1,label,x2\n0.1,cat,2\n0.3,dog,4\n\n0.5,cat,6\n")
    put("csv", "quoted.csv", b"\x01" + b'"a","b"\r\n"1.5",x\r\n"2",y\r\n')
    # Tabs, or semicolons with decimal commas, where the first line has no comma.
    put("csv", "tabs.tsv", b"\x00" + b"label\tx\ty\ncat\t1.5\t2\ndog\t-1\t0.25\n")
    put("csv", "semicolons.csv", b"\x02" + b'x;label;y\n1,5;cat;2\n"-1,0";dog;0,25\n')
    # Row names in an unnamed first column, as pandas' to_csv writes its index.
    put("csv", "row_names.csv", b"\x02" + b",x,label\n0,1.5,cat\n1,2,dog\n")
    # A separator ending every line: an unnamed, empty last column.
    put("csv", "trailing.csv", b"\x00" + b"y,a,b,\n1,2,3,\n0,4,5,\n")
    # Columns left unread: "x" and the last (the first byte's 0x40), the labels by name.
    put("csv", "ignored.csv", b"\x44" + b"id,x,label,y,z\n1,0.5,cat,2,9\n2,1.5,dog,3,8\n")
    # More than 2 x 2,048 lines, first byte's high bit set: two threads parse runs of lines.
    lines = ["label,a,b"] + ["%d,%d.5,%d" % (i % 3, i, -i) for i in range(4200)]
    put("csv", "two_runs.csv", b"\x80" + ("\n".join(lines) + "\n").encode())

    # Image folders: records of [tag: class | 0x80 test | 0x40 skip bad] [length, 2 bytes LE] [bytes].
    def record(tag, data):
        return bytes([tag]) + struct.pack("<H", len(data)) + data
    a = png(2, 2, 0, [b"\x00\xff", b"\xff\x00"])
    c = png(2, 2, 0, [b"\xff\xff", b"\x00\x00"])
    put("image_folder", "two_classes", record(0, a) + record(1, c) + record(0, c) + record(1, a))
    put("image_folder", "with_test", record(0, a) + record(1, c) + record(0x80, a) + record(0x81, c))
    put("image_folder", "with_val", record(0, a) + record(1, c) + record(0x80, a) + record(0x81, c) +
        record(0x20, c) + record(0x21, a))
    put("image_folder", "sizes", record(0, a) + record(1, png(3, 1, 0, [b"\x01\x02\x03"])) + record(0x41, b"junk"))

    # softreg serve's paths: run id, newline, file name, newline, a metrics.csv (fuzz_serve_paths.cpp).
    put("serve_paths", "file", b"run\nmetrics.csv\nepoch,train_loss\n1,0.5\n2,0.25\n")
    put("serve_paths", "alias", b"latest\nmetrics.csv\n")
    put("serve_paths", "escape", b"out\nsecret.txt\n")
    put("serve_paths", "leak", b"run\nleak.txt\n")
    put("serve_paths", "traversal", b"run\n../out/secret.txt\nepoch,x,note\n1,nan,\"q\"\n")
    put("serve_paths", "dots", b"..\n.softreg.lock\n")


if __name__ == "__main__":
    main()
