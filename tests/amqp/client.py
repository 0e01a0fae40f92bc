"""An AMQP legacy client that Poststelle did not write: Python pika (PyPI), for the e2e tests.

Reads the queues from network.json (`network init --amqp`), as any script would, and prints one
JSON object with what it saw. Modes:
  round-trip NETWORK VALID INVALID   publish a valid and an invalid message to node a's intake
      queue with reply_to/correlation_id; collect both replies, the valid message from node b's
      inbox queue and the invalid one from node a's dead-letter queue.
  poison NETWORK VALID MARKER N      publish a message containing MARKER, then N valid messages
      (fresh UUIDs); collect the N from node b's inbox and the poison message from the
      dead-letter queue.
  restart NETWORK VALID N            publish N valid messages (fresh UUIDs, publisher confirms,
      republishing whatever was not confirmed when the connection broke) while the broker is
      stopped and started (`rabbitmqctl stop_app` / `start_app`) after a third of them; count
      what node b's inbox queue delivers: lost and duplicated (by XÖV UUID), and how many of the
      duplicates are redeliveries of the same inbox message (same AMQP message_id, which an
      idempotent client drops) rather than a second message.
  forge NETWORK                      publish a document that claims to come from node a to node
      b's transport queue (read from b's config: [amqp] transport_queue) and print the answer.
  cleanup NETWORK                    delete every queue of the network (and its dead-letter
      exchanges) once its nodes have stopped, so that test runs leave the broker as they found it.
"""
import json
import re
import sys
import time
import uuid

import pika

TIMEOUT = 60


def first(ch, queue, deadline):
    while time.time() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method:
            return props, body
        time.sleep(0.05)
    return None, None


def main():
    mode, network = sys.argv[1], json.load(open(sys.argv[2]))
    a, b = network["nodes"][0]["amqp"], network["nodes"][1]["amqp"]
    inbox = list(b["inbox"].values())[0]
    conn = pika.BlockingConnection(pika.URLParameters(a["url"]))
    ch = conn.channel()
    ch.confirm_delivery()
    deadline = time.time() + TIMEOUT
    out = {}
    if mode == "round-trip":
        valid, invalid = open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
        reply = ch.queue_declare(queue="", exclusive=True).method.queue
        events = ch.queue_declare(queue="", exclusive=True).method.queue
        ch.queue_bind(events, "poststelle.events", "status.#")
        for corr, body in (("valid-1", valid), ("invalid-1", invalid)):
            props = pika.BasicProperties(delivery_mode=2, content_type="application/xml",
                                         reply_to=reply, correlation_id=corr)
            ch.basic_publish("", a["intake"], body, props, mandatory=True)
        replies = {}
        while len(replies) < 2 and time.time() < deadline:
            props, body = first(ch, reply, deadline)
            if props:
                replies[props.correlation_id] = json.loads(body)
        out["replies"] = replies
        props, body = first(ch, inbox, deadline)
        out["inbox"] = props and {"message_id": props.message_id, "headers": props.headers,
                                  "same_bytes": body == valid}
        props, body = first(ch, a["dead_letter_queue"], deadline)
        out["dead"] = props and {"code": props.headers.get("x-poststelle-code"),
                                 "correlation_id": props.correlation_id, "same_bytes": body == invalid}
        # Status events of the two messages (the exchange is shared with other networks).
        ids = {replies.get("valid-1", {}).get("id"), out["inbox"] and out["inbox"]["message_id"]}
        seen, raw = [], []
        while time.time() < deadline:
            method, props, body = ch.basic_get(events, auto_ack=True)
            if not method:
                if sum(1 for e in seen if e["status"] == "delivered") >= 2:
                    break
                time.sleep(0.05)
                continue
            event = json.loads(body)
            if event["message_id"] in ids:
                seen.append(event)
                raw.append(body.decode())
                if event["status"] != method.routing_key.split(".", 1)[1]:
                    raise SystemExit("routing key %s for %s" % (method.routing_key, event))
        out["events"], out["events_raw"] = seen, raw
    elif mode == "poison":
        valid, marker, n = open(sys.argv[3]).read(), sys.argv[4], int(sys.argv[5])
        old = re.search(r"<[^>]*nachrichtenUUID>([^<]+)<", valid).group(1)
        poison = valid.replace(old, str(uuid.uuid4())).replace("</", "<!-- %s --></" % marker, 1)
        props = pika.BasicProperties(delivery_mode=2, content_type="application/xml")
        ch.basic_publish("", a["intake"], poison.encode(), props, mandatory=True)
        sent = []
        for _ in range(n):
            u = str(uuid.uuid4())
            sent.append(u)
            ch.basic_publish("", a["intake"], valid.replace(old, u).encode(), props, mandatory=True)
        arrived = []
        while len(arrived) < n and time.time() < deadline:
            props, body = first(ch, inbox, deadline)
            if props:
                arrived.append(props.headers.get("x-poststelle-xoev-uuid"))
        out["sent"], out["arrived"] = sent, arrived
        props, body = first(ch, a["dead_letter_queue"], deadline)
        deaths = (props.headers or {}).get("x-death") if props else None
        out["dead"] = props and {"poison": marker.encode() in body,
                                 "reason": deaths[0]["reason"] if deaths else None,
                                 "delivery_count": deaths[0].get("count") if deaths else None}
    elif mode == "restart":
        conn.close()
        out = restart(a, inbox, open(sys.argv[3]).read(), int(sys.argv[4]))
        print(json.dumps(out, default=str))
        return
    elif mode == "forge":
        queue = re.search(r'transport_queue = "([^"]+)"', open(network["nodes"][1]["config"]).read()).group(1)
        reply = ch.queue_declare(queue="", exclusive=True).method.queue
        props = pika.BasicProperties(content_type="application/xml", reply_to=reply, correlation_id="forged",
                                     headers={"x-poststelle-node": "a"})
        ch.basic_publish("", queue, b"<Envelope xmlns='urn:example:not-ours'/>", props, mandatory=True)
        props, body = first(ch, reply, deadline)
        out = props and {"status": (props.headers or {}).get("x-poststelle-status"),
                         "correlation_id": props.correlation_id, "body": body.decode(errors="replace")[:2000]}
    elif mode == "cleanup":
        for node in network["nodes"]:
            q = node["amqp"]
            transport = q["intake"][: -len(".intake")] + ".transport"
            for name in [q["intake"], q["dead_letter_queue"], transport, *q["inbox"].values()]:
                ch.queue_delete(name)
            ch.exchange_delete(q["dead_letter_queue"][: -len(".dead")] + ".dlx")
    conn.close()
    print(json.dumps(out, default=str))


def connect(url):
    while True:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(url))
            ch = conn.channel()
            ch.confirm_delivery()
            return conn, ch
        except pika.exceptions.AMQPError:
            time.sleep(0.25)


def restart(a, inbox, valid, n):
    import subprocess
    old = re.search(r"<[^>]*nachrichtenUUID>([^<]+)<", valid).group(1)
    sent = [str(uuid.uuid4()) for _ in range(n)]
    props = pika.BasicProperties(delivery_mode=2, content_type="application/xml")
    conn, ch = connect(a["url"])
    republished, i, restarted = 0, 0, False
    while i < n:
        if i == n // 3 and not restarted:
            restarted = True
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
            time.sleep(2)
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
        try:
            ch.basic_publish("", a["intake"], valid.replace(old, sent[i]).encode(), props, mandatory=True)
            i += 1
        except (pika.exceptions.AMQPError, OSError):
            # Not confirmed: publish it again on a new connection (intake is idempotent).
            republished += 1
            conn, ch = connect(a["url"])
    deadline = time.time() + 180
    seen, ids = {}, {}

    def take(props_):
        u = props_.headers.get("x-poststelle-xoev-uuid")
        seen[u] = seen.get(u, 0) + 1
        ids.setdefault(u, set()).add(props_.message_id)

    while len(seen) < n and time.time() < deadline:
        try:
            method, props_, body = ch.basic_get(inbox, auto_ack=True)
        except (pika.exceptions.AMQPError, OSError):
            conn, ch = connect(a["url"])
            continue
        if method:
            take(props_)
        else:
            time.sleep(0.05)
    # Anything still arriving late would be a duplicate: drain for a moment more.
    end = time.time() + 2
    while time.time() < end:
        method, props_, body = ch.basic_get(inbox, auto_ack=True)
        if method:
            take(props_)
        else:
            time.sleep(0.05)
    conn.close()
    return {
        "sent": n,
        "republished": republished,
        "lost": sum(1 for u in sent if u not in seen),
        "duplicated": sum(c - 1 for c in seen.values() if c > 1),
        "second_messages": sum(len(v) - 1 for v in ids.values()),
        "unexpected": sum(1 for u in seen if u not in set(sent)),
    }


main()
