"""An independent check of recovery-info's checkpoints and Merkle proofs, written from RFC 9162
(sections 2.1.1 to 2.1.4) and C2SP's signed-note and tlog-checkpoint, sharing no code with the
service. Reads one JSON document on stdin:

    {"verifier_key": "<name>+<hash>+<base64>", "checkpoint": "<signed note>",
     "leaf_inputs": ["<base64 chain hash of position 1>", ...],   # the log as read from the DB
     "inclusion": [<answers of GET .../audit/proof/inclusion>],
     "consistency": [<answers of GET .../audit/proof/consistency>]}

and exits 0 printing "ok: <n> checks" when everything verifies, 1 with the first failure.
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def mth(leaves):
    """RFC 9162 2.1.1: MTH of a list of leaf inputs (the leaves' data, not their hashes)."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00", leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha256(b"\x01", mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf_hash, index, size, proof, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = sha256(b"\x01", p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(b"\x01", r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 2.1.4.2."""
    if first == second:
        return not proof and first_hash == second_hash
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_hash] + proof
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = sha256(b"\x01", c, fr)
            sr = sha256(b"\x01", c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha256(b"\x01", sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def open_note(note, vkey):
    """C2SP signed-note with an Ed25519 key: the checkpoint text, if the key signed it."""
    name, key_hash, data = vkey.split("+", 2)
    data = base64.b64decode(data)
    if data[0] != 1 or len(data) != 33:
        raise SystemExit("fail: not an Ed25519 verifier key")
    if sha256(name.encode(), b"\n", data)[:4].hex() != key_hash:
        raise SystemExit("fail: the verifier key's hash does not match")
    text, _, sigs = note.partition("\n\n")
    text += "\n"
    for line in sigs.splitlines():
        prefix = "\u2014 " + name + " "
        if not line.startswith(prefix):
            continue
        blob = base64.b64decode(line[len(prefix):])
        if blob[:4].hex() != key_hash:
            continue
        Ed25519PublicKey.from_public_bytes(data[1:]).verify(blob[4:], text.encode())
        origin, size, root = text.splitlines()[:3]
        return origin, int(size), base64.b64decode(root)
    raise SystemExit("fail: no signature of the key")


def main():
    doc = json.load(sys.stdin)
    b = base64.b64decode
    checks = 0
    origin, size, root = open_note(doc["checkpoint"], doc["verifier_key"])
    checks += 1
    leaves = [b(x) for x in doc["leaf_inputs"]]
    if mth(leaves[:size]) != root:
        raise SystemExit(f"fail: the checkpoint's root is not MTH of the log's first {size} leaves")
    checks += 1
    for a in doc["inclusion"]:
        leaf = a["leaf"]
        chain = sha256(b(leaf["prev_hash"]), b(leaf["payload"]))
        if chain != b(leaf["hash"]) or sha256(b"\x00", chain) != b(leaf["leaf_hash"]):
            raise SystemExit(f"fail: leaf {a['leaf_index']} is not made of its event")
        expected_root = mth(leaves[: a["tree_size"]])
        if b(a["root"]) != expected_root:
            raise SystemExit(f"fail: the root of size {a['tree_size']} is not MTH of the log")
        proof = [b(p) for p in a["proof"]]
        if not verify_inclusion(sha256(b"\x00", chain), a["leaf_index"], a["tree_size"], proof, expected_root):
            raise SystemExit(f"fail: inclusion of leaf {a['leaf_index']} in {a['tree_size']}")
        checks += 1
    for a in doc["consistency"]:
        m, n = a["from"], a["to"]
        old, new = mth(leaves[:m]), mth(leaves[:n])
        if b(a["from_root"]) != old or b(a["to_root"]) != new:
            raise SystemExit(f"fail: the roots of {m} and {n} are not MTH of the log")
        if not verify_consistency(m, n, old, new, [b(p) for p in a["proof"]]):
            raise SystemExit(f"fail: consistency of {m} with {n}")
        checks += 1
    print(f"ok: {checks} checks")


if __name__ == "__main__":
    main()
