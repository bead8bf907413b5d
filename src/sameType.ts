/**
 * `Same<A, B>` is `true` when A and B are the same type, else `never`: a
 * constant typed `Same<Machines, Wire> = true` stops the compile when a status
 * is added on one side of a wire contract and not the other.
 */
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
