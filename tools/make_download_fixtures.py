#!/usr/bin/python3
"""Makes the tiny IDX data set that the download tests serve from a loopback server
(tests/fixtures/download/*.gz) and prints the checksums that tests/test_download.cpp pins.

Two classes of 4x4 images: class 0 bright on the left half, class 1 on the right. gzip with mtime 0,
so the bytes do not depend on when the script ran. Usage: /usr/bin/python3 tools/make_download_fixtures.py
"""
import gzip
import hashlib
import os
import struct

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "download")


def images(labels):
    body = bytearray()
    for i, label in enumerate(labels):
        for row in range(4):
            for col in range(4):
                bright = (col < 2) == (label == 0)
                body.append(200 + (i + row) % 50 if bright else (i * 7 + col) % 30)
    return struct.pack(">IIII", 2051, len(labels), 4, 4) + bytes(body)


def label_file(labels):
    return struct.pack(">II", 2049, len(labels)) + bytes(labels)


def main():
    os.makedirs(OUT, exist_ok=True)
    train = [0, 1] * 12
    test = [1, 0] * 4
    contents = {
        "train-images-idx3-ubyte.gz": images(train),
        "train-labels-idx1-ubyte.gz": label_file(train),
        "t10k-images-idx3-ubyte.gz": images(test),
        "t10k-labels-idx1-ubyte.gz": label_file(test),
    }
    for name, content in contents.items():
        packed = gzip.compress(content, compresslevel=9, mtime=0)
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(packed)
        print(f'{{"{name}", {len(packed)}, "{hashlib.sha256(packed).hexdigest()}", {len(content)}, '
              f'"{hashlib.sha256(content).hexdigest()}"}},')


if __name__ == "__main__":
    main()
