"""Sends track calls through Segment's Python library to the host given on the command line.

Usage: send_events.py HOST WRITE_KEY GZIP(0|1)
Prints the messageIds of the calls as a JSON list on standard output.
"""

import json
import sys

from segment.analytics import Client


def main():
    host, write_key, gzip = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    failures = []
    client = Client(
        write_key=write_key,
        host=host,
        gzip=gzip,
        max_retries=0,
        on_error=lambda error, batch: failures.append(str(error)),
    )
    message_ids = []
    for index in range(3):
        _, message = client.track(
            user_id=f"python-user-{index}",
            event="Order Completed",
            properties={"revenue": "19.99", "plan": "pro"},
            context={"traits": {"plan": "pro"}},
        )
        message_ids.append(message["messageId"])
    _, message = client.identify(user_id="python-user-0", traits={"plan": "pro"})
    client.flush()
    client.join()
    if failures:
        print(json.dumps({"failures": failures}), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(message_ids))


if __name__ == "__main__":
    main()
