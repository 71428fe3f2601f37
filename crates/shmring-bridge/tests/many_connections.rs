//! A thousand connections held at once by a bridge process: each is its own
//! stream (its own stream id, its own frame numbers) although they share a
//! few producer slots, and the bridge's memory grows by little per idle
//! connection (printed; only a generous sanity bound is asserted).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use shmring_bridge::client::{Client, CHROMIUM_FRAGMENT};
use shmring_bridge::process_usage;
use shmring_media::AudioFrame;

const CONNECTIONS: usize = 1000;

#[test]
fn a_thousand_connections_are_held_each_its_own_stream() {
    shmring_bridge::raise_open_file_limit(); // this process holds them too
    let consumer = ring(16 << 20);
    let bridge = BridgeProcess::start(&consumer, &["--max-connections", "2000"]);
    std::thread::sleep(Duration::from_millis(200));
    let before = process_usage::of_process(bridge.pid()).unwrap();

    let mut clients = Vec::with_capacity(CONNECTIONS);
    let mut stream_ids = BTreeSet::new();
    for _ in 0..CONNECTIONS {
        let mut client = Client::connect(bridge.addr).unwrap();
        let ready = client.declare(SMALL_AUDIO_DECLARATION).unwrap();
        stream_ids.insert(ready["stream_id"].as_u64().unwrap() as u32);
        clients.push(client);
    }
    assert_eq!(stream_ids.len(), CONNECTIONS, "every connection is its own stream");
    let stats = bridge.stats();
    assert_eq!(stats["upgrades"], CONNECTIONS);
    assert_eq!(stats["connections_open"], CONNECTIONS + 1, "all held (and the /stats request)");
    let held = process_usage::of_process(bridge.pid()).unwrap();
    let producers = stats["producers"].as_u64().unwrap();

    // Two frames on every connection, numbered per connection.
    for number in 0..2 {
        for client in &mut clients {
            client.send_binary(&small_audio(number), CHROMIUM_FRAGMENT).unwrap();
        }
    }
    let mut seen = std::collections::BTreeMap::<u32, Vec<u64>>::new();
    for _ in 0..2 * CONNECTIONS {
        let (_, payload) = next_record(&consumer, Duration::from_secs(10)).expect("one record per message");
        let chunk = AudioFrame::from_payload(&payload).unwrap();
        let mut expected = small_audio(chunk.frame_number());
        expected[8..12].copy_from_slice(&chunk.stream_id().to_ne_bytes());
        assert_eq!(payload, expected);
        seen.entry(chunk.stream_id()).or_default().push(chunk.frame_number());
    }
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), stream_ids);
    assert!(seen.values().all(|numbers| numbers == &[0, 1]), "each stream's frames in its own order");
    let after = process_usage::of_process(bridge.pid()).unwrap();

    let kib = |bytes: u64| bytes as f64 / 1024.0;
    let per_connection = |from: u64, to: u64| (to as f64 - from as f64) / CONNECTIONS as f64;
    println!("bridge memory with {CONNECTIONS} connections sharing {producers} producer slots:");
    println!("  {:<28} {:>12} {:>12}", "", "RSS (KiB)", "private (KiB)");
    for (what, usage) in [("started", before), ("connections held", held), ("after 2 frames each", after)] {
        println!("  {what:<28} {:>12.0} {:>12.0}", kib(usage.rss), kib(usage.rss_anon));
    }
    let growth = per_connection(before.rss_anon, held.rss_anon);
    println!("  per idle connection: {growth:.0} bytes private, {:.0} bytes RSS", per_connection(before.rss, held.rss));
    assert!(growth < 64.0 * 1024.0, "{growth} bytes per idle connection");
    drop(clients);
    bridge.wait_for(Duration::from_secs(10), "the hang-ups", |s| s["connections_open"] == 1);
}
