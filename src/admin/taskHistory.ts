/**
 * The recent changes of recent tasks, for the dashboard's per-task timeline:
 * every task change this node hears (its own and, on a shared database, other
 * nodes'), kept per URL for the most recently changed URLs. Memory is bounded
 * (URLs × changes per URL); it starts empty at each start (the task row keeps
 * the times that outlive a restart: created, started, finished).
 */
import type { Store, TaskChange } from '../store/index.js';
import { taskEvent } from './adminSocket.js';
import type { TaskEvent } from './adminSocket.js';

export class TaskHistory {
  private readonly byUrl = new Map<string, TaskEvent[]>();
  private readonly onTask = (change: TaskChange) => {
    let events = this.byUrl.get(change.url);
    if (events === undefined) {
      events = [];
      if (this.byUrl.size >= this.maxUrls) this.byUrl.delete(this.byUrl.keys().next().value!);
    } else {
      this.byUrl.delete(change.url); // newest last
    }
    this.byUrl.set(change.url, events);
    // Progress changes of one download are many: keep the last of a run of them.
    const event = taskEvent(change);
    const last = events.at(-1);
    if (last !== undefined && last.status === 'downloading' && event.status === 'downloading' && event.bytes > 0 && last.bytes > 0) events[events.length - 1] = event;
    else events.push(event);
    if (events.length > this.maxPerUrl) events.splice(0, events.length - this.maxPerUrl);
  };

  constructor(
    private readonly store: Store,
    private readonly maxUrls = 5000,
    private readonly maxPerUrl = 40,
  ) {
    store.events.on('task', this.onTask);
  }

  /** The changes heard for `url`, oldest first. */
  timeline(url: string): TaskEvent[] {
    return [...(this.byUrl.get(url) ?? [])];
  }

  close(): void {
    this.store.events.off('task', this.onTask);
  }
}
