"""A real SMTP server on loopback for the tests (aiosmtpd): every message it accepts is written
to DIR as <n>.eml (the message as received) and <n>.json (envelope sender and recipients, and
the Message-ID, subject, text and HTML bodies decoded by Python's email package).

    python3 smtp_sink.py DIR PORT

Environment: SMTP_SINK_REJECT — recipients (comma-separated) refused with 550 at RCPT, a
permanently failing address; SMTP_SINK_DELAY — seconds to wait after keeping a message before
answering 250 (a `DIR/<n>.received` marker says it is waiting), so that a test can kill a
sender between its send and its bookkeeping. Prints "ready" when it listens.
"""

import asyncio
import email
import email.policy
import json
import os
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.reject = {a.strip().lower() for a in os.environ.get("SMTP_SINK_REJECT", "").split(",") if a.strip()}
        self.delay = float(os.environ.get("SMTP_SINK_DELAY", "0"))
        self.count = len([f for f in os.listdir(directory) if f.endswith(".eml")])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = f"{self.count:05d}-{time.time_ns()}"
        path = os.path.join(self.directory, n)
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
        with open(path + ".json", "w") as f:
            json.dump({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "message_id": msg["Message-ID"],
                "subject": msg["Subject"],
                "text": plain.get_content() if plain else None,
                "html": html.get_content() if html else None,
            }, f)
        with open(path + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(path + ".eml.tmp", path + ".eml")
        if self.delay:
            # Kept, and the answer late: a sender killed now has had its message delivered
            # without learning it.
            open(path + ".received", "w").close()
            await asyncio.sleep(self.delay)
        return "250 Message accepted"


def main():
    directory, port = sys.argv[1], int(sys.argv[2])
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
