export { decodeBudget, DEFAULT_ORIGINAL_MAX, defaultBox, MAX_IMAGE_PIXELS, processImage } from './processImage.js';
export type { EncodedImage, ProcessedImage } from './processImage.js';
export { readImageHeader } from './imageHeader.js';
export type { ImageHeader } from './imageHeader.js';
export { PixelBudget } from './pixelBudget.js';
