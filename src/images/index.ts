export { processImage } from './processImage.js';
export type { ProcessedImage } from './processImage.js';
