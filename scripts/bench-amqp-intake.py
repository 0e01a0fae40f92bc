"""AMQP intake throughput (pika): publish N messages (fresh UUIDs) to node a's intake queue with
reply_to, and time until node a has answered all N (a reply is sent after the durable commit).
Usage: bench-amqp-intake.py NETWORK.json MESSAGE.xml N"""
import json
import re
import sys
import time
import uuid

import pika

network, template, n = json.load(open(sys.argv[1])), open(sys.argv[2]).read(), int(sys.argv[3])
a = network["nodes"][0]["amqp"]
old = re.search(r"<[^>]*nachrichtenUUID>([^<]+)<", template).group(1)
bodies = [template.replace(old, str(uuid.uuid4())).encode() for _ in range(n)]
conn = pika.BlockingConnection(pika.URLParameters(a["url"]))
ch = conn.channel()
reply = ch.queue_declare(queue="", exclusive=True).method.queue
accepted = 0
refused = 0


def on_reply(ch_, method, props, body):
    global accepted, refused
    if json.loads(body).get("status") == "accepted":
        accepted += 1
    else:
        refused += 1


ch.basic_consume(reply, on_reply, auto_ack=True)
start = time.time()
for i, body in enumerate(bodies):
    props = pika.BasicProperties(delivery_mode=2, content_type="application/xml", reply_to=reply,
                                 correlation_id=str(i))
    ch.basic_publish("", a["intake"], body, props)
published = time.time() - start
while accepted + refused < n and time.time() - start < 600:
    conn.process_data_events(time_limit=0.1)
elapsed = time.time() - start
conn.close()
print(f"amqp intake: {accepted}/{n} accepted ({refused} refused) in {elapsed:.1f} s "
      f"({accepted / elapsed:.0f}/s intake; publishing took {published:.1f} s)")
