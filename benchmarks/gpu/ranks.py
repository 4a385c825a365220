"""Run one command as the ranks of a single DDP job on this machine, launched as a cluster launcher would.

    python benchmarks/gpu/ranks.py 2 -- python -m recsys_attn.evaluate ckpt_path=... trainer=gpu +trainer.num_nodes=2 \\
        'trainer.strategy={_target_:lightning.pytorch.strategies.DDPStrategy,process_group_backend:gloo}'

Lightning takes processes started from outside (``LOCAL_RANK`` is set) and, with ``num_nodes=N devices=1``,
each one as a node of one device (``NODE_RANK``), so N processes can share one GPU, which ``trainer.devices=2``
refuses (device ids must be unique). NCCL refuses two ranks on one GPU as well, hence the gloo backend above.
Exits with the first failing rank's status, after stopping the others.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    """A TCP port nothing listens on now (for the job's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ranks", type=int, help="processes in the job")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="after --: the command every rank runs")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    shared = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(args.ranks)}
    procs = [
        subprocess.Popen(command, env={**os.environ, **shared, "NODE_RANK": str(r), "RANK": str(r), "LOCAL_RANK": "0"})
        for r in range(args.ranks)
    ]
    while any(p.poll() is None for p in procs):
        if any(p.returncode for p in procs):  # one rank failed: the others would wait for it forever
            for p in procs:
                if p.poll() is None:
                    p.terminate()
        time.sleep(0.5)
    failed = [p.returncode for p in procs if p.returncode]
    sys.exit(failed[0] if failed else 0)


if __name__ == "__main__":
    main()
