#!/usr/bin/env python3
"""Turn a loopback pcap of PostgreSQL TCP connections into .seg files, one per
connection: records of [u8 dir (0 client->server, 1 server->client)]
[u32 BE len][payload] in capture order, retransmissions dropped.
Usage: extract.py in.pcap out-prefix [port]  ->  out-prefix.N.seg"""
import struct
import sys


def packets(path):
    with open(path, 'rb') as f:
        data = f.read()
    magic = struct.unpack('<I', data[:4])[0]
    end = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
    linktype = struct.unpack(end + 'I', data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + 'IIII', data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        l2 = {1: 14, 113: 16, 276: 20}.get(linktype, 0)
        yield frame[l2:]


def main():
    src, prefix = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 5499
    nxt = {}
    conns = {}
    for ip in packets(src):
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        tcp = ip[ihl:]
        sport, dport, seq = struct.unpack('>HHI', tcp[:8])
        flags = tcp[13]
        payload = tcp[(tcp[12] >> 4) * 4:struct.unpack('>H', ip[2:4])[0] - ihl]
        if port not in (sport, dport):
            continue
        d = 0 if dport == port else 1
        key = (sport if d == 0 else dport, d)
        if flags & 0x02:            # SYN: data starts at seq+1
            nxt[key] = seq + 1
            conns.setdefault(key[0], bytearray())
            continue
        if not payload or key not in nxt:
            continue
        skip = (nxt[key] - seq) & 0xffffffff
        if skip >= len(payload):    # retransmission
            continue
        payload = payload[skip:]
        nxt[key] = (nxt[key] + len(payload)) & 0xffffffff
        conns[key[0]] += struct.pack('>BI', d, len(payload)) + payload
    for i, out in enumerate(conns.values()):
        with open('%s.%d.seg' % (prefix, i), 'wb') as f:
            f.write(out)


if __name__ == '__main__':
    main()
