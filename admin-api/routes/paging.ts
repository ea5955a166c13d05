/**
 * The response of every cursor-paged list route: one page of `items` and the cursor of the next
 * (null on the last page). One shape, so the console and API clients page every list the same way.
 */
export function pagedResponse<const Item extends object>(item: Item) {
  return {
    type: 'object',
    properties: {
      items: { type: 'array', items: item },
      nextCursor: { type: ['string', 'null'] },
    },
  } as const;
}
