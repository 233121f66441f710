"""udp_echo.py ADDRESS PORT: a UDP echo server for the lab tests. Each datagram goes back to its
sender unchanged, and a line per datagram (size, sender) goes to stdout for the test to read."""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    d, peer = s.recvfrom(65536)
    print(f"{len(d)} bytes from {peer[0]}:{peer[1]}", flush=True)
    s.sendto(d, peer)
