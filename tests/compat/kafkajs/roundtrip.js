// kafkajs against kbroker: create a topic, produce N keyed messages with headers,
// check the offsets through the admin API, and read everything back.
//
//   node roundtrip.js BOOTSTRAP TOPIC COUNT COMPRESSION(none|gzip) MODE(fetch|group)
//
// MODE fetch reads without a consumer group, through kafkajs's own Fetch request and
// record-batch decoding (its cluster and broker objects); MODE group uses the public
// consumer API, which needs the group APIs (FindCoordinator, JoinGroup, SyncGroup,
// Heartbeat, OffsetFetch/Commit).
//
// Message i: key "key-<i % 99>", partition i % 3 (so a key always has one partition),
// value "value <i> ✓ " + "x" * (i % 40), headers idx=<i>, src=kafkajs.
// Prints one JSON object: {produced: [[i, partition, offset]...], topicOffsets, consumed}.
'use strict'

const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

const [bootstrap, topic, countArg, compressionArg = 'none', mode = 'fetch'] =
  process.argv.slice(2)
const count = Number(countArg)
const PARTITIONS = 3

const message = i => ({
  key: `key-${i % 99}`,
  value: `value ${i} \u2713 ` + 'x'.repeat(i % 40),
  partition: i % PARTITIONS,
  headers: { idx: String(i), src: 'kafkajs' },
})

const kafka = new Kafka({
  clientId: 'kbroker-compat',
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
  retry: { retries: 5 },
})

async function produce() {
  const producer = kafka.producer()
  await producer.connect()
  const produced = []
  const compression = compressionArg === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None
  for (let start = 0; start < count; start += 1000) {
    const indexes = []
    for (let i = start; i < Math.min(count, start + 1000); i++) indexes.push(i)
    const results = await producer.send({
      topic,
      compression,
      messages: indexes.map(message),
    })
    // one batch per partition: offsets follow the order within each partition
    const base = {}
    for (const r of results) {
      if (r.errorCode !== 0) throw new Error(`produce error ${JSON.stringify(r)}`)
      base[r.partition] = Number(r.baseOffset)
    }
    const seen = {}
    for (const i of indexes) {
      const p = i % PARTITIONS
      seen[p] = (seen[p] || 0) + 1
      produced.push([i, p, base[p] + seen[p] - 1])
    }
  }
  await producer.disconnect()
  return produced
}

async function consumeWithFetch() {
  const symbol = Object.getOwnPropertySymbols(kafka)
    .find(s => s.description === 'private:Kafka:createCluster')
  const cluster = kafka[symbol]({})
  await cluster.connect()
  await cluster.addTargetTopic(topic)
  const consumed = []
  for (const meta of cluster.findTopicPartitionMetadata(topic)) {
    const broker = await cluster.findBroker({ nodeId: String(meta.leader) })
    let offset = 0
    let highWatermark = -1
    const deadline = Date.now() + 30000
    while (highWatermark < 0 || offset < highWatermark) {
      if (Date.now() > deadline) throw new Error(`fetch timed out at ${offset}`)
      const response = await broker.fetch({
        replicaId: -1,
        isolationLevel: 1,
        maxWaitTime: 100,
        topics: [{
          topic,
          partitions: [{ partition: meta.partitionId, fetchOffset: String(offset),
                         maxBytes: 1048576 }],
        }],
      })
      const [part] = response.responses[0].partitions
      if (part.errorCode !== 0) throw new Error(`fetch error ${part.errorCode}`)
      highWatermark = Number(part.highWatermark)
      for (const m of part.messages) {
        if (Number(m.offset) < offset) continue // the batch holding our offset starts earlier
        consumed.push(record(meta.partitionId, m))
        offset = Number(m.offset) + 1
      }
    }
  }
  await cluster.disconnect()
  return consumed
}

async function consumeWithGroup() {
  const consumer = kafka.consumer({ groupId: `compat-${topic}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const consumed = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`group consume timed out at ${consumed.length}`)), 60000)
    consumer.run({
      eachMessage: async ({ partition, message: m }) => {
        consumed.push(record(partition, m))
        if (consumed.length >= count) {
          clearTimeout(timer)
          resolve()
        }
      },
    }).catch(reject)
  })
  await consumer.disconnect()
  return consumed
}

function record(partition, m) {
  const headers = {}
  for (const [k, v] of Object.entries(m.headers || {})) headers[k] = v.toString()
  return {
    partition,
    offset: Number(m.offset),
    key: m.key === null ? null : m.key.toString('base64'),
    value: m.value === null ? null : m.value.toString('base64'),
    headers,
    timestamp: Number(m.timestamp),
  }
}

async function main() {
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
  })
  if (created !== true) throw new Error('createTopics returned false')
  const produced = await produce()
  const topicOffsets = await admin.fetchTopicOffsets(topic)
  await admin.disconnect()
  const consumed = mode === 'group' ? await consumeWithGroup() : await consumeWithFetch()
  process.stdout.write(JSON.stringify({ produced, topicOffsets, consumed }))
}

main().catch(err => {
  console.error(err && err.stack ? err.stack : err)
  process.exit(1)
})
